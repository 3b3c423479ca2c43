"""docker-compose.yml, Dockerfile and .dockerignore say what the deployment needs.

No Docker here: the files are parsed and their structure checked, including that every
setting the services are given is one that shared.runtime.settings.ServiceSettings actually reads.
"""

from __future__ import annotations

import importlib
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic_settings import BaseSettings

from services.registry import NAMES
from shared.runtime.settings import ServiceSettings

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
APP_SERVICES = NAMES
SCALABLE = ("matching", "notifications")
# The notifications settings as documented, the reference only while services/notifications
# has no settings class of its own.
SMTP_SETTINGS = {
    "SMTP_HOST",
    "SMTP_PORT",
    "SMTP_FROM",
    "SMTP_USERNAME",
    "SMTP_PASSWORD",
    "SMTP_STARTTLS",
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


def env_names(model: type[BaseSettings]) -> set[str]:
    """The environment variables a settings model reads (nested settings use their prefix)."""
    prefix = str(model.model_config.get("env_prefix", ""))
    names: set[str] = set()
    for field_name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseSettings):
            names |= env_names(annotation)
        else:
            names.add((prefix + field_name).upper())
    return names


def service_settings(name: str) -> type[ServiceSettings] | None:
    """The service's own settings class (services/<name>/settings.py or entrypoint.py)."""
    for module_name in (f"services.{name}.settings", f"services.{name}.entrypoint"):
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name != module_name:
                raise
            continue
        found = {
            obj
            for obj in vars(module).values()
            if isinstance(obj, type)
            and issubclass(obj, ServiceSettings)
            and obj is not ServiceSettings
        }
        if len(found) == 1:
            return found.pop()
    return None


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # the KEY=value list form
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def host_port(spec: str | dict[str, Any]) -> str | None:
    """The fixed host port of a `ports:` entry, or None if Docker picks one."""
    if isinstance(spec, dict):
        published = spec.get("published")
        return str(published) if published not in (None, "") else None
    parts = str(spec).split("/")[0].split(":")
    if len(parts) == 1:  # "8000"
        return None
    host = parts[-2]  # "29092:29092" or "127.0.0.1:29092:29092" or "127.0.0.1::8000"
    return host or None


def seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)(ms|s|m)", duration)
    assert match, f"unexpected duration {duration!r}"
    value, unit = int(match[1]), match[2]
    return {"ms": value / 1000, "s": value, "m": value * 60}[unit]


def test_every_service_exists(services: dict[str, Any]) -> None:
    expected = {"kafka", "postgres", "mailpit", "provision", *APP_SERVICES}
    assert expected <= set(services), f"missing: {expected - set(services)}"


def test_env_names_helper_reads_the_settings_model() -> None:
    names = env_names(ServiceSettings)
    assert {"KAFKA_BOOTSTRAP_SERVERS", "KAFKA_SASL_PASSWORD", "DATABASE_URL", "HTTP_PORT"} <= names
    assert "KAFKA" not in names  # the nested model contributes its fields, not itself


# --- Kafka -----------------------------------------------------------------------------


def test_kafka_is_a_complete_kraft_single_node(services: dict[str, Any]) -> None:
    kafka = services["kafka"]
    assert kafka["image"] == "apache/kafka:4.1.1"
    env = env_of(kafka)
    required = {
        "KAFKA_NODE_ID",
        "KAFKA_PROCESS_ROLES",
        "KAFKA_LISTENERS",
        "KAFKA_ADVERTISED_LISTENERS",
        "KAFKA_CONTROLLER_LISTENER_NAMES",
        "KAFKA_INTER_BROKER_LISTENER_NAME",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
        "KAFKA_CONTROLLER_QUORUM_VOTERS",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR",
        "KAFKA_AUTO_CREATE_TOPICS_ENABLE",
    }
    assert required <= set(env), f"missing: {required - set(env)}"
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    for key, value in env.items():
        if key.endswith(("_REPLICATION_FACTOR", "_MIN_ISR")):
            assert value == "1", f"{key}={value} on a single broker"


def test_kafka_listeners_are_consistent(services: dict[str, Any]) -> None:
    env = env_of(services["kafka"])

    def by_name(value: str) -> dict[str, str]:
        return dict(item.split("://", 1) for item in value.split(","))

    listeners = by_name(env["KAFKA_LISTENERS"])
    advertised = by_name(env["KAFKA_ADVERTISED_LISTENERS"])
    protocols = dict(
        item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]

    assert listeners == {"PLAINTEXT": ":9092", "CONTROLLER": ":9093", "EXTERNAL": ":29092"}
    assert set(listeners) <= set(protocols), "every listener needs a security protocol"
    assert controller in listeners and controller not in advertised
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] in advertised
    assert advertised["PLAINTEXT"] == "kafka:9092"  # what the other containers resolve
    assert advertised["EXTERNAL"] == "localhost:29092"  # what the host resolves
    voter_id, voter_address = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split("@")
    assert voter_id == env["KAFKA_NODE_ID"]
    assert voter_address == "kafka" + listeners[controller]
    assert "29092" in {host_port(p) for p in services["kafka"].get("ports", [])}


def test_kafka_and_postgres_have_healthchecks(services: dict[str, Any]) -> None:
    kafka_check = " ".join(services["kafka"]["healthcheck"]["test"])
    assert "/opt/kafka/bin/kafka-broker-api-versions.sh" in kafka_check
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert services["postgres"]["image"].startswith("postgres:15")
    volume = services["postgres"]["volumes"][0].split(":")[0]
    assert not volume.startswith((".", "/")), "PostgreSQL data belongs in a named volume"


# --- the services ----------------------------------------------------------------------


def test_services_are_given_only_real_settings(services: dict[str, Any]) -> None:
    for name in ("provision", *APP_SERVICES):
        env = env_of(services[name])
        assert {"KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "HTTP_PORT", "HTTP_HOST"} <= set(env)
        own = service_settings(name) if name in APP_SERVICES else None
        if own is not None:  # a subclass of ServiceSettings
            known, source = env_names(own), own.__name__
        else:
            known, source = env_names(ServiceSettings), "ServiceSettings"
            if name == "notifications":
                known |= SMTP_SETTINGS
        unknown = set(env) - known
        assert not unknown, f"{name}: {sorted(unknown)} is no field of {source}"


def test_services_reach_the_containers_not_localhost(services: dict[str, Any]) -> None:
    advertised = env_of(services["kafka"])["KAFKA_ADVERTISED_LISTENERS"].split(",")
    for name in ("provision", *APP_SERVICES):
        env = env_of(services[name])
        assert f"PLAINTEXT://{env['KAFKA_BOOTSTRAP_SERVERS']}" in advertised
        assert "@postgres:5432/" in env["DATABASE_URL"]
        assert env["HTTP_HOST"] == "0.0.0.0"  # reachable from outside the container


def test_one_image_and_the_command_chooses_the_service(services: dict[str, Any]) -> None:
    images = {services[name]["image"] for name in ("provision", *APP_SERVICES)}
    assert len(images) == 1, f"one image for every service, got {images}"
    for name in ("provision", *APP_SERVICES):
        build = services[name]["build"]
        context = build["context"] if isinstance(build, dict) else build
        assert context == "."
    for name in APP_SERVICES:
        assert services[name]["command"] == ["python", "-m", f"services.{name}"]


def test_containers_are_locked_down_as_in_kubernetes(services: dict[str, Any]) -> None:
    for name in ("provision", *APP_SERVICES):
        service = services[name]
        assert service["read_only"] is True, name
        assert "/tmp" in service["tmpfs"], name
        assert service["cap_drop"] == ["ALL"], name


def test_provision_creates_topics_then_migrates(services: dict[str, Any]) -> None:
    provision = services["provision"]
    command = provision["command"]
    argv = shlex.split(command) if isinstance(command, str) else command
    assert argv[:2] == ["sh", "-c"]
    steps = [step.strip() for step in argv[2].split("&&")]
    assert steps == ["mentornet topics create", "mentornet migrate"]
    assert provision["depends_on"] == {
        "kafka": {"condition": "service_healthy"},
        "postgres": {"condition": "service_healthy"},
    }
    assert str(provision.get("restart", "no")) == "no"


def test_the_mentornet_command_is_installed_by_the_package() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "mentornet" in pyproject["project"]["scripts"]


def test_services_start_after_provisioning(services: dict[str, Any]) -> None:
    for name in APP_SERVICES:
        depends_on = services[name]["depends_on"]
        assert depends_on["provision"] == {"condition": "service_completed_successfully"}


def test_scalable_services_have_no_fixed_name_or_host_port(services: dict[str, Any]) -> None:
    for name in ("provision", *APP_SERVICES):
        assert "container_name" not in services[name], f"{name} could not be scaled"
    for name in SCALABLE:
        fixed = [p for p in services[name].get("ports", []) if host_port(p) is not None]
        assert not fixed, f"{name}: {fixed} would collide under --scale"


def test_services_are_probed_and_drained(services: dict[str, Any]) -> None:
    for name in APP_SERVICES:
        service = services[name]
        test = " ".join(service["healthcheck"]["test"])
        assert "/healthz" in test and "python" in test and "curl" not in test
        graceful = float(env_of(service)["GRACEFUL_TIMEOUT"])
        assert seconds(service["stop_grace_period"]) > graceful


def test_notifications_mail_goes_to_mailpit(services: dict[str, Any]) -> None:
    mailpit = services["mailpit"]
    image, _, tag = mailpit["image"].partition(":")
    assert image == "axllent/mailpit" and re.fullmatch(r"v\d+\.\d+\.\d+", tag), "pin mailpit"
    assert "8025" in {host_port(p) for p in mailpit.get("ports", [])}
    env = env_of(services["notifications"])
    assert env["SMTP_HOST"] == "mailpit" and env["SMTP_PORT"] == "1025"


# --- Dockerfile ------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def test_dockerfile_has_a_pinned_base_and_two_stages() -> None:
    instructions = dockerfile_instructions()
    args: dict[str, str] = {}
    bases: list[str] = []
    for keyword, rest in instructions:
        if keyword == "ARG" and "=" in rest and not bases:
            key, value = rest.split("=", 1)
            args[key] = value
        if keyword == "FROM":
            image = rest.split()[0]
            bases.append(re.sub(r"\$\{(\w+)\}", lambda m: args[m[1]], image))
    assert len(bases) >= 2, "multi-stage: a builder and a runtime"
    for base in bases:
        assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", base), base


def test_dockerfile_runs_as_a_fixed_non_root_user() -> None:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    users = [rest for keyword, rest in instructions[last_from:] if keyword == "USER"]
    assert users, "the runtime stage must switch user"
    uid = users[-1].split(":")[0]
    assert uid == "10001", "numeric UID 10001 (Kubernetes runAsNonRoot can check it)"
    runtime = instructions[last_from:]
    assert ("EXPOSE", "8000") in runtime
    assert ("CMD", '["python", "-m", "services.profiles"]') in runtime
    assert any("PYTHONDONTWRITEBYTECODE=1" in rest for keyword, rest in runtime if keyword == "ENV")
    assert any(
        keyword == "COPY" and "--from=builder" in rest and "/opt/venv" in rest
        for keyword, rest in runtime
    ), "the runtime copies the builder's venv"


def test_dockerignore_keeps_local_state_out_of_the_image() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", ".stack", "tests", "benchmarks/results"} <= ignored
