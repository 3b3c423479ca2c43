"""The `mentornet` command line, run as a process (`python -m shared.ops.cli`) against the real broker
and database: dead letters (list, show, replay), the report, schemas, topics, migrate, simulate,
the stack, and the one-line errors.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from services.registry import NAMES as SERVICES
from services.registry import SERVICES as SPECS
from shared.contract.topics import TOPICS
from shared.local.infra import Endpoints
from shared.local.stack import REPO_ROOT, StackConfig, down
from shared.ops.analytics import program_health
from shared.runtime.db.migrations import planned
from tests.support import (
    ServiceProcess,
    TopicReader,
    cloud_event,
    free_ports,
    publish_raw,
    running,
    unique,
)
from tests.support.host import scratch_home
from tests.unit.test_report import at, iso, scenario

pytestmark = pytest.mark.integration


def mentornet(
    infra: Endpoints, *args: str, env: dict[str, str] | None = None, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    """The CLI exactly as an operator runs it, pointed at the test infrastructure."""
    return subprocess.run(
        [sys.executable, "-m", "shared.ops.cli", *args],
        cwd=REPO_ROOT,
        env={
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": infra.bootstrap_servers,
            "DATABASE_URL": infra.database_url,
            "COLUMNS": "250",  # rich wraps tables at 80 columns in a pipe otherwise
            "PYTHONIOENCODING": "utf-8",
            **(env or {}),
        },
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=timeout,
    )


async def cli(infra: Endpoints, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run the CLI without blocking the event loop (readers in this test keep fetching)."""
    return await asyncio.to_thread(mentornet, infra, *args, **kwargs)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """A user's mistake: non-zero exit and exactly one line on stderr, no traceback."""
    assert result.returncode != 0, result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def header(record: Any, name: str) -> str:
    return dict(record.headers)[name].decode()


@pytest.fixture(scope="module")
async def profiles(service_env: dict[str, str]) -> AsyncIterator[ServiceProcess]:
    async with running(["profiles"], service_env) as procs:
        yield procs["profiles"]


@pytest.fixture
async def private_topics(infra: Endpoints) -> AsyncIterator[tuple[str, str]]:
    """A dead-letter topic and an 'original' topic of this test alone: replaying --all or --code
    there cannot touch what other tests (or other runs on a shared broker) dead-lettered."""
    suffix = uuid.uuid4().hex[:10]
    names = (f"test-dlq-{suffix}", f"test-origin-{suffix}")
    admin = AIOKafkaAdminClient(bootstrap_servers=infra.bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, 1, 1) for n in names])
        yield names
        await admin.delete_topics(list(names))
    finally:
        await admin.close()


# --- dead letters ------------------------------------------------------------------------------


async def test_a_rejected_registration_is_listed_shown_and_replayed(
    infra: Endpoints, profiles: ServiceProcess
) -> None:
    tenant, person = unique("acme"), unique("p")
    data = {
        "person_id": person,
        "program_id": "prog-1",
        "display_name": "Zoë Ünal",
        "email": f"{person}@example.org",
        "languages": ["klingon"],
        "timezone": "Europe/Paris",
        "expertise": [{"topic": "python", "level": 4}],
        "capacity": 2,
    }
    raw = json.dumps(cloud_event("mentor-registered", tenant, data), ensure_ascii=False).encode()
    key = person.encode()
    mine = lambda r: r.key == key  # noqa: E731
    async with TopicReader(infra.bootstrap_servers, "dlq.profiles") as dlq:
        await publish_raw(
            infra.bootstrap_servers,
            [("mentor-registered", key, raw)],
            headers=[("x-trace", b"trace-1")],
        )
        [letter] = await dlq.collect(lambda rs: len(rs) >= 1, keep=mine)
    offset = str(letter.offset)
    assert header(letter, "dlq-reason-code") == "invalid_field"

    listed = ok(await cli(infra, "dlq", "list", "--service", "profiles", "--limit", "100000"))
    [line] = [row for row in listed.splitlines() if person in row]
    assert "dlq.profiles" in line and f" {offset} " in line
    assert f"mentor-registered:{header(letter, 'dlq-partition')}:" in line
    assert "invalid_field" in line and "'data.languages.0'" in line
    assert person in ok(await cli(infra, "dlq", "list", "--code", "invalid_field"))

    shown = ok(await cli(infra, "dlq", "show", "dlq.profiles", offset))
    assert "invalid_field" in shown and "'data.languages.0': 'klingon' is not an ISO" in shown
    assert f"mentor-registered partition {header(letter, 'dlq-partition')}" in shown
    assert "x-trace: trace-1" in shown and "Zoë Ünal" in shown
    assert f"original value ({len(raw)} bytes, UTF-8 text)" in shown

    async with TopicReader(infra.bootstrap_servers, "mentor-registered", "dlq.profiles") as reader:
        dry = ok(await cli(infra, "dlq", "replay", "dlq.profiles", "--offset", offset, "--dry-run"))
        assert "would replay 1 record(s)" in dry and "mentor-registered (dry run)" in dry
        assert await reader.drain(2, keep=mine) == []

        done = ok(await cli(infra, "dlq", "replay", "dlq.profiles", "--offset", offset))
        assert "replayed 1 record(s) from dlq.profiles" in done
        # The original comes back byte for byte, with its own headers only; profiles still
        # refuses it (nobody fixed the publisher), so it is dead-lettered a second time.
        records = await reader.collect(lambda rs: len(rs) >= 2, keep=mine)
    [again] = [r for r in records if r.topic == "mentor-registered"]
    [second] = [r for r in records if r.topic == "dlq.profiles"]
    assert again.value == raw and list(again.headers) == [("x-trace", b"trace-1")]
    assert header(second, "dlq-offset") == str(again.offset)


async def test_binary_values_selectors_and_errors_on_a_private_dead_letter_topic(
    infra: Endpoints, private_topics: tuple[str, str]
) -> None:
    dlq_topic, origin = private_topics

    def dead(code: str, target: str = origin) -> list[tuple[str, bytes]]:
        return [
            ("x-app", b"hr"),
            ("dlq-reason-code", code.encode()),
            ("dlq-reason", f"reason of {code}".encode()),
            ("dlq-topic", target.encode()),
            ("dlq-partition", b"0"),
            ("dlq-offset", b"7"),
        ]

    for value, headers in [
        (b"\xff\xfe binary \x00", dead("invalid_utf8")),  # offset 0
        (b"{not json 1", dead("not_json")),  # 1
        (b"{not json 2", dead("not_json")),  # 2
        (b"{}", dead("delivery_failed", "notification-failed")),  # 3: nothing reads it
        (b"plain", [("x-app", b"hr")]),  # 4: not a dead letter at all
    ]:
        await publish_raw(infra.bootstrap_servers, [(dlq_topic, b"k", value)], headers=headers)

    listed = ok(await cli(infra, "dlq", "list", "--topic", dlq_topic))
    assert "5 of 5 dead letter(s)" in listed and f"{origin}:0:7" in listed

    shown = ok(await cli(infra, "dlq", "show", dlq_topic, "0"))
    assert "not valid UTF-8" in shown and "\\xff\\xfe binary" in shown
    assert "ff fe 20 62 69 6e" in ok(await cli(infra, "dlq", "show", dlq_topic, "0", "--hex"))

    async with TopicReader(infra.bootstrap_servers, origin) as reader:
        done = ok(await cli(infra, "dlq", "replay", dlq_topic, "--code", "not_json"))
        assert "replayed 2 record(s)" in done
        replayed = await reader.collect(lambda rs: len(rs) >= 2)
        assert [r.value for r in replayed] == [b"{not json 1", b"{not json 2"]
        assert all(list(r.headers) == [("x-app", b"hr")] and r.key == b"k" for r in replayed)
        assert "nothing to replay" in ok(
            await cli(infra, "dlq", "replay", dlq_topic, "--code", "x")
        )

        errors = [
            (("dlq", "show", dlq_topic, "99"), f"offset 99 not found in {dlq_topic} partition 0"),
            (("dlq", "show", "no-such-topic", "0"), "unknown topic 'no-such-topic'"),
            (("dlq", "show", dlq_topic, "0", "--partition", "3"), "has no partition 3"),
            (("dlq", "replay", dlq_topic, "--offset", "99"), "offset 99 not found"),
            (("dlq", "replay", dlq_topic), "give exactly one of --offset"),
            (("dlq", "replay", dlq_topic, "--all", "--code", "x"), "give exactly one of"),
            (("dlq", "replay", dlq_topic, "--offset", "3"), "no mentornet service reads"),
            (("dlq", "replay", dlq_topic, "--all"), "offset 4 of " + dlq_topic),
            (("dlq", "list", "--service", "billing"), "unknown service 'billing'"),
            (("dlq", "list", "-b", "127.0.0.1:1"), "KafkaConnectionError"),
        ]
        for args, message in errors:
            assert message in one_line_error(await cli(infra, *args)), args
        assert await reader.drain(1) == []  # no failed command published anything


# --- the report ---------------------------------------------------------------------------------


def keyed(events: list[dict[str, Any]]) -> list[tuple[str, bytes, bytes]]:
    """Records keyed as the contract says: tenant:program for enrolments, else match_id."""
    records = []
    for e in events:
        data = e["data"]
        key = (
            f"{e['tenantid']}:{data['program_id']}"
            if e["type"].startswith("enrolment-")
            else data["match_id"]
        )
        records.append((e["type"], key.encode(), json.dumps(e).encode()))
    return records


async def test_report_prints_the_figures_of_a_published_stream(
    infra: Endpoints, tmp_path: Path
) -> None:
    tenant = unique("analytics")
    events = scenario(tenant)
    invalid = cloud_event("session-completed", tenant, {"match_id": "m1", "session_id": "s"})
    # M1's answer to its check-in request, rated out of range: refused, so it answers nothing.
    out_of_range = cloud_event(
        "feedback-given",
        tenant,
        {"match_id": "m1", "person_id": "M1", "kind": "checkin", "rating": 9, "learned": True},
        time=iso(at(30)),
    )
    await publish_raw(
        infra.bootstrap_servers,
        [
            *keyed(events),
            ("session-completed", b"m1", json.dumps(invalid).encode()),
            ("feedback-given", b"m1", json.dumps(out_of_range).encode()),
        ],
    )

    result = await cli(infra, "report", "--tenant", tenant, "--json")
    figures = json.loads(ok(result))
    assert figures == [h.as_dict() for h in program_health(events, tenant=tenant)]
    p1 = figures[0]
    assert (p1["program"], p1["mentors"], p1["mentees"]) == ("p1", 3, 5)
    assert p1["acceptance_rate"] == pytest.approx(4 / 6)
    assert p1["time_to_proposal"]["median_seconds"] == 7200
    assert (p1["checkin_response_rate"], p1["win_win_rate"]) == (0.5, 0.5)
    assert p1["mentor_load"]["gini"] == pytest.approx(4 / 9)
    assert f"{len(events)} events read (tenant {tenant})" in result.stderr
    assert "2 invalid ingress records ignored" in result.stderr

    page = tmp_path / "health.html"
    text = ok(
        await cli(infra, "report", "--tenant", tenant, "--program", "p1", "--html", str(page))
    )
    assert f"{tenant} / p1" in text and f"{tenant} / p2" not in text
    for figure in [
        "median 2.0 h, p90 3.2 h (5 mentees)",
        "median 5.0 h, p90 8.2 h (3 mentees)",
        "66.7% (4 of 6 decided)",
        "4 confirmed (1 open, 1 completed, 1 ended early, 1 cancelled)",
        "median 51.0 d, p90 82.2 d (2 closed relationships)",
        "1.00 (4 sessions)",
        "50.0% (1 of 2 check-in requests answered)",
        "66.7% (2 of 3 goals reached at least partly)",
        "50.0% (1 of 2 closed with both closing feedbacks)",
        "mean 50.0%, max 100.0%, Gini 0.444",
    ]:
        assert figure in text
    html = page.read_text()
    assert html.count("<svg") == 3 and "<script" not in html and "66.7% (4 of 6 decided)" in html

    nothing = ok(await cli(infra, "report", "--tenant", unique("nobody")))
    assert "no events for tenant" in nothing
    assert "cannot write" in one_line_error(
        await cli(infra, "report", "--tenant", tenant, "--html", str(tmp_path / "no" / "x.html"))
    )


async def test_report_live_window_counts_what_is_published_meanwhile(infra: Endpoints) -> None:
    tenant = unique("live")
    [mentor] = [
        e
        for e in scenario(tenant)
        if e["type"] == "enrolment-updated" and e["data"]["person_id"] == "M2"
    ]
    command = asyncio.create_task(
        cli(infra, "report", "--tenant", tenant, "--live", "--timeout", "8", "--json")
    )
    deadline = time.monotonic() + 7
    while time.monotonic() < deadline and not command.done():
        # The same event again and again: inside the window it counts once (same id).
        await publish_raw(infra.bootstrap_servers, keyed([mentor]))
        await asyncio.sleep(0.5)
    [p1] = json.loads(ok(await command))
    assert (p1["tenant"], p1["mentors"], p1["mentees"]) == (tenant, 1, 0)


# --- the other commands ---------------------------------------------------------------------------


async def test_schemas_export_writes_a_schema_per_event_and_asyncapi(
    infra: Endpoints, tmp_path: Path
) -> None:
    out = ok(await cli(infra, "schemas", "export", str(tmp_path / "schemas")))
    written = sorted(p.name for p in (tmp_path / "schemas").iterdir())
    assert f"wrote {len(written)} files" in out
    assert "mentor-registered.schema.json" in written and "asyncapi-profiles.json" in written
    schema = json.loads((tmp_path / "schemas" / "match-proposed.schema.json").read_text())
    assert schema["properties"]["type"] == {"const": "match-proposed", "title": "Type"}


async def test_topics_create_is_idempotent_and_describe_lists_the_registry(
    infra: Endpoints,
) -> None:
    assert "created 0 topic(s)" in ok(await cli(infra, "topics", "create"))
    described = ok(await cli(infra, "topics", "describe"))
    for name, spec in TOPICS.items():
        [line] = [row for row in described.splitlines() if f" {name} " in row]
        assert "yes" in line and f"{spec.partitions}/{spec.partitions}" in line
    assert "error: " in (await cli(infra, "topics", "describe", "-b", "127.0.0.1:1")).stderr


@pytest.fixture
async def database(infra: Endpoints) -> AsyncIterator[tuple[str, bool]]:
    """(url, fresh): a new empty database when the role may create one, else the test one."""
    name = f"cli_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(infra.database_url)
    try:
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        except asyncpg.InsufficientPrivilegeError:
            yield infra.database_url, False
            return
        yield f"{infra.database_url.rpartition('/')[0]}/{name}", True
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def test_migrate_applies_every_migration_once(
    infra: Endpoints, database: tuple[str, bool]
) -> None:
    url, fresh = database
    first = ok(await cli(infra, "migrate", "--database-url", url))
    applied = re.search(r"applied (\d+) migration\(s\)", first)
    assert applied, first
    if fresh:
        assert int(applied.group(1)) >= 5 and "profiles/common:001" in first
    assert "applied 0 migration(s)" in ok(await cli(infra, "migrate", "--database-url", url))
    conn = await asyncpg.connect(url)
    try:
        for service in SERVICES:
            done = {
                r["id"] for r in await conn.fetch(f"SELECT id FROM {service}.schema_migrations")
            }
            assert {m.id for m in planned(service, SPECS[service].migrations)} <= done
    finally:
        await conn.close()
    assert "does not exist" in one_line_error(
        await cli(infra, "migrate", "--database-url", url.rpartition("/")[0] + "/no_such_db")
    )


async def test_simulate_publishes_registrations_like_an_hr_system(infra: Endpoints) -> None:
    tenant = unique("sim")
    async with TopicReader(infra.bootstrap_servers, "mentor-registered", "mentee-registered") as r:
        out = ok(
            await cli(
                infra,
                "simulate",
                *("--tenant", tenant, "--mentors", "2", "--mentees", "3", "--programs", "1"),
                *("--rate", "500", "--no-show-proposals"),
            )
        )
        records = await r.collect(
            lambda rs: len(rs) >= 5, keep=lambda rec: json.loads(rec.value)["tenantid"] == tenant
        )
    assert "published 5 events" in out
    assert (
        sorted(rec.topic for rec in records)
        == ["mentee-registered"] * 3 + ["mentor-registered"] * 2
    )


@pytest.fixture
def stack_home() -> Iterator[dict[str, str]]:
    """Environment for a stack of this test alone: its own folder and free ports."""
    home = scratch_home("mentornet-cli-stack-")
    names = ("kafka", "controller", "pg", "smtp", *SERVICES)
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    env = {"MENTORNET_HOME": str(home)}
    env |= {f"MENTORNET_{n.upper()}_PORT": str(p) for n, p in ports.items() if n != "controller"}
    env["MENTORNET_KAFKA_CONTROLLER_PORT"] = str(ports["controller"])
    yield env
    cfg = StackConfig.model_validate({"home": home, **{f"{n}_port": p for n, p in ports.items()}})
    down(cfg)  # safety net if the test failed half-way
    shutil.rmtree(home, ignore_errors=True)


async def test_stack_up_status_and_down_from_the_command_line(
    infra: Endpoints, stack_home: dict[str, str]
) -> None:
    up = ok(await cli(infra, "stack", "up", "--no-services", env=stack_home, timeout=300))
    assert "mentornet stack down" in up
    status = ok(await cli(infra, "stack", "status", env=stack_home))
    for component in ("kafka", "postgres"):
        [line] = [row for row in status.splitlines() if f" {component} " in row]
        assert "running" in line
    stopped = ok(await cli(infra, "stack", "down", env=stack_home))
    assert "kafka" in stopped and "postgres" in stopped
    assert "nothing was running" in ok(await cli(infra, "stack", "down", env=stack_home))
