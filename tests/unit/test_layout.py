"""The house's rules that a reader relies on: one registry of services and topics that code and
docs agree with, and a wheel that carries only what runs in production."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest
from setuptools import find_packages

from services.registry import NAMES, SERVICES
from shared.contract.topics import SERVICES as CONTRACT_SERVICES
from shared.contract.topics import TOPICS, dead_letter_topic, published_by, read_by

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
DEV_ONLY = {
    "aiosmtpd",
    "cloudevents",
    "playwright",
    "pytest",
    "hypothesis",
    "testcontainers",
    "tests",
    "benchmarks",
}


def test_the_registry_names_the_services_the_contract_knows() -> None:
    assert NAMES == CONTRACT_SERVICES
    for name, spec in SERVICES.items():
        assert spec.name == name
        assert spec.migrations.is_dir() and list(spec.migrations.glob("[0-9][0-9][0-9]_*.sql"))
        assert spec.reads, f"{name} reads nothing"
        assert dead_letter_topic(name) in TOPICS


def test_each_service_subscribes_to_what_the_registry_says() -> None:
    for name, spec in SERVICES.items():
        app = spec.build(spec.settings())
        subscribed = {
            getattr(topic, "name", topic)
            for subscriber in app.broker.subscribers
            for topic in subscriber.topics
        }
        assert subscribed == set(read_by(name)), name
        published = {p.topic for p in app.broker.publishers}
        assert published == set(published_by(name)), name


def _contract_table() -> dict[str, tuple[str, set[str]]]:
    """docs/contract.md's topic table: topic -> (who publishes, who reads)."""
    text = (ROOT / "docs" / "contract.md").read_text()
    section = text.split("## Topics", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, tuple[str, set[str]]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not cells[0].startswith("`"):
            continue
        readers = {r.strip() for r in cells[3].split(",")}
        for topic in re.findall(r"`([^`]+)`", cells[0]):
            rows[topic] = (cells[2], readers)
    return rows


def test_the_contract_doc_lists_every_topic_with_its_publisher_and_readers() -> None:
    table = _contract_table()
    assert set(table) == set(TOPICS)
    for name, topic in TOPICS.items():
        publisher, readers = table[name]
        if name.startswith("dlq."):
            assert publisher == "each service" and not topic.consumers
            continue
        assert publisher == topic.producer, name
        assert readers & set(NAMES) == set(topic.consumers), name


def _packaged_modules() -> dict[str, Path]:
    """Every module the wheel holds, as setuptools finds them from pyproject.toml."""
    find = PYPROJECT["tool"]["setuptools"]["packages"]["find"]
    packages = find_packages(str(ROOT), include=find["include"], exclude=find.get("exclude", ()))
    modules = {}
    for package in packages:
        folder = ROOT / package.replace(".", "/")
        for path in folder.glob("*.py"):
            name = package if path.stem == "__init__" else f"{package}.{path.stem}"
            modules[name] = path
    return modules


def test_the_wheel_carries_only_what_runs_in_production() -> None:
    modules = _packaged_modules()
    assert "services.matching.handlers" in modules and "shared.ops.cli.main" in modules
    leaked = [m for m in modules if m.split(".")[0] in ("tests", "benchmarks")]
    assert not leaked and not [m for m in modules if m.startswith("shared.local")]
    requirements = " ".join(PYPROJECT["project"]["dependencies"])
    assert "aiosmtpd" not in requirements and "cloudevents" not in requirements


def test_production_modules_import_nothing_the_wheel_lacks() -> None:
    """At import time a packaged module only needs packaged modules and runtime dependencies
    (the CLI's `stack` and `simulate` commands import the local stack when they run)."""
    modules = _packaged_modules()
    for name, path in modules.items():
        for node in ast.parse(path.read_text()).body:  # module level only
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                imported = [node.module]
            elif isinstance(node, ast.Import):
                imported = [alias.name for alias in node.names]
            else:
                continue
            for target in imported:
                top = target.split(".")[0]
                assert top not in DEV_ONLY, f"{name} imports {target}"
                if top in ("shared", "services"):
                    parent = target.rsplit(".", 1)[0]
                    assert target in modules or parent in modules, f"{name} imports {target}"


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if "==" in line and not line.lstrip().startswith("#"):
            name, version = line.split("==")
            pins[re.sub(r"[-_.]+", "-", name.strip().lower())] = version.strip()
    return pins


def test_every_dependency_is_locked_and_installed_from_the_lock() -> None:
    """A fresh install gets the versions the tests ran with, not whatever the ranges admit."""
    pins = _pins()
    project = PYPROJECT["project"]
    for spec in [*project["dependencies"], *project["optional-dependencies"]["dev"]]:
        name = re.split(r"[\[<>=!~; ]", spec, maxsplit=1)[0]
        assert re.sub(r"[-_.]+", "-", name.lower()) in pins, f"{name} is not in requirements.lock"
    assert "-c requirements.lock" in (ROOT / "Makefile").read_text()
    assert "-c requirements.lock" in (ROOT / "Dockerfile").read_text()
    assert (
        "/"
        not in "".join(  # no machine paths (find-links, index URLs) in the lock
            line
            for line in (ROOT / "requirements.lock").read_text().splitlines()
            if line[:1] == "-"
        )
    )


def test_faststream_is_at_a_release_whose_nack_rewinds_every_partition() -> None:
    """FastStream 0.7.0 to 0.7.4 rewound only the first record's partition on a NACK of a
    batch: the records of the other partitions were skipped, so lost."""
    (spec,) = [d for d in PYPROJECT["project"]["dependencies"] if d.startswith("faststream")]
    assert ">=0.7.5" in spec
    major, minor, patch = (int(part) for part in _pins()["faststream"].split(".")[:3])
    assert (major, minor, patch) >= (0, 7, 5)
