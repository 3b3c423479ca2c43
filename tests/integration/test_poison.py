"""One bad record never stops a partition, on the real broker and database.

Poison of every kind we know is published amid valid traffic on the same keys: what the contract
refuses (a NUL character, a time out of range or without a UTC offset, a `ce_` header without a
value), a record the database refuses when it is applied (a trigger the test installs), and one
that fails twice for a transient reason (a serialization failure) before it goes through. Each
poison record is answered on its dead-letter topic with its reason, every valid event around it
is applied exactly once, the consumer group catches up to the end of every partition, and
/readyz stays 200. A record that fails for a transient reason forever stalls its partition:
/readyz answers 503 and names it, and the partition moves on once the cause is gone.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
import pytest

from shared.contract.topics import dead_letter_topic, read_by
from shared.local.infra import Endpoints
from shared.local.probes import wait_until
from tests.support import (
    ServiceProcess,
    TopicReader,
    cloud_event,
    fresh_group,
    publish_raw,
    running,
    unique,
)
from tests.support.fault import wait_lag_zero

pytestmark = pytest.mark.integration

STALL_AFTER = 3.0  # seconds


@pytest.fixture(scope="module")
async def services(
    infra: Endpoints, service_env: dict[str, str]
) -> AsyncIterator[tuple[dict[str, ServiceProcess], str]]:
    group = await fresh_group(infra.bootstrap_servers, "profiles", "poison-profiles")
    matching_group = await fresh_group(infra.bootstrap_servers, "matching", "poison-matching")
    env = {**service_env, "STALL_AFTER_SECONDS": str(STALL_AFTER)}
    groups = {"profiles": group, "matching": matching_group}
    async with running(["profiles", "matching"], env, groups) as procs:
        yield procs, group


def mentor(person: str, name: str) -> dict[str, Any]:
    return {
        "person_id": person,
        "program_id": "prog",
        "display_name": name,
        "email": f"{person}@example.org",
        "languages": ["en"],
        "timezone": "Europe/Paris",
        "expertise": [{"topic": "python", "level": 3}],
        "capacity": 1,
    }


@asynccontextmanager
async def refusing(db: asyncpg.Pool, tenant: str) -> AsyncIterator[None]:
    """Make the database refuse, for `tenant` only, the enrolment of a person named 'Poison'
    (a check violation: it would recur on every retry) and, twice, one named 'Flaky' (a
    serialization failure: transient), the way a real constraint or conflict would."""
    name = re.sub(r"\W", "_", tenant)
    await db.execute(
        f"""CREATE SEQUENCE profiles.{name}_flaky;
            CREATE FUNCTION profiles.{name}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              IF NEW.tenant_id = '{tenant}' AND NEW.display_name = 'Poison' THEN
                RAISE EXCEPTION 'refused by the test' USING ERRCODE = 'check_violation',
                  COLUMN = 'display_name', TABLE = 'enrolments';
              END IF;
              IF NEW.tenant_id = '{tenant}' AND NEW.display_name IN ('Flaky', 'Stuck')
                 AND (NEW.display_name = 'Stuck' OR nextval('profiles.{name}_flaky') <= 2) THEN
                RAISE EXCEPTION 'try again' USING ERRCODE = 'serialization_failure';
              END IF;
              RETURN NEW;
            END $$;
            CREATE TRIGGER {name} BEFORE INSERT OR UPDATE ON profiles.enrolments
              FOR EACH ROW EXECUTE FUNCTION profiles.{name}();"""
    )
    try:
        yield
    finally:
        await db.execute(
            f"""DROP TRIGGER {name} ON profiles.enrolments; DROP FUNCTION profiles.{name}();
                DROP SEQUENCE profiles.{name}_flaky;"""
        )


def registration(tenant: str, person: str, name: str, **overrides: Any) -> dict[str, Any]:
    return cloud_event("mentor-registered", tenant, mentor(person, name), **overrides)


def raw(event: dict[str, Any]) -> bytes:
    return json.dumps(event).encode()


async def test_poison_of_every_kind_is_answered_and_every_partition_keeps_moving(
    infra: Endpoints,
    db: asyncpg.Pool,
    services: tuple[dict[str, ServiceProcess], str],
) -> None:
    procs, group = services
    bootstrap = infra.bootstrap_servers
    tenant = unique("poison")
    people = [f"{tenant}-p{i}" for i in range(24)]
    first = [registration(tenant, p, "Version 1", time="2026-01-01T00:00:00Z") for p in people]
    # Profiles keeps the latest registration of a person: the poison's persons' later events are
    # dated before the poison, so the poison is the one their batch tries to store.
    later = [
        registration(
            tenant, p, "Version 2", time=f"2026-{'01-10' if 3 <= i <= 8 else '02-01'}T00:00:00Z"
        )
        for i, p in enumerate(people)
    ]
    nul = registration(tenant, people[3], "Ada\u0000")
    ancient = registration(tenant, people[4], "Old", time="0001-01-01T00:00:00+14:00")
    naive = registration(tenant, people[5], "Naive", time="2026-01-15T00:00:00")
    refused = registration(tenant, people[7], "Poison", time="2026-01-15T00:00:00Z")
    flaky = registration(tenant, people[8], "Flaky", time="2026-01-15T00:00:00Z")
    binary = registration(tenant, people[6], "Binary")
    binary_headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", binary["id"].encode()),
        ("ce_source", None),
        ("ce_type", b"mentor-registered"),
        ("ce_time", binary["time"].encode()),
        ("ce_tenantid", tenant.encode()),
    ]
    answer = cloud_event(  # matching reads the apps' topics: a time without offset there too
        "match-responded",
        tenant,
        {"match_id": f"{tenant}-m", "person_id": people[0], "decision": "accepted"},
        time="2026-01-15T00:00:00",
    )
    poison = {e["id"]: e for e in (nul, ancient, naive, refused)}

    def record(event: dict[str, Any]) -> tuple[str, bytes, bytes]:
        return ("mentor-registered", event["data"]["person_id"].encode(), raw(event))

    async with (
        refusing(db, tenant),
        TopicReader(
            bootstrap,
            dead_letter_topic("profiles"),
            dead_letter_topic("matching"),
            "enrolment-updated",
        ) as reader,
    ):
        await publish_raw(bootstrap, [record(e) for e in first])
        await publish_raw(bootstrap, [record(e) for e in (nul, ancient, naive, refused, flaky)])
        await publish_raw(
            bootstrap, [(*record(binary)[:2], raw(binary["data"]))], headers=binary_headers
        )
        await publish_raw(
            bootstrap, [("match-responded", answer["data"]["match_id"].encode(), raw(answer))]
        )
        await publish_raw(bootstrap, [record(e) for e in later])

        def mine(r: Any) -> bool:
            return (r.key or b"").decode().startswith(tenant)

        # The latest valid registration of each person: each must be published once. (An
        # earlier one may be folded into it when both fall in one batch: only the latest of a
        # person in a batch is stored and published.)
        latest = {e["id"] for i, e in enumerate(later) if i != 8} | {flaky["id"]}

        def complete(records: list[Any]) -> bool:
            letters = [r for r in records if r.topic.startswith("dlq.")]
            return len(letters) >= 6 and latest <= causes(records)

        seen = await reader.collect(complete, timeout=90, keep=mine)
        seen += await reader.drain(3, keep=mine)  # nothing more comes: no second answer

    letters = {
        (r.topic, r.key.decode()): (dict(r.headers), r.value)
        for r in seen
        if r.topic.startswith("dlq.")
    }
    assert len([r for r in seen if r.topic.startswith("dlq.")]) == 6, "each poison answered once"

    def letter(topic: str, person: str) -> tuple[str, str, bytes]:
        headers, value = letters[(topic, person)]
        return headers["dlq-reason-code"].decode(), headers["dlq-reason"].decode(), value

    profiles_dlq = dead_letter_topic("profiles")
    code, reason, value = letter(profiles_dlq, people[3])
    assert code == "invalid_field" and "'data.display_name'" in reason and "NUL" in reason
    assert value == raw(nul)  # the original bytes
    code, reason, _ = letter(profiles_dlq, people[4])
    assert code == "invalid_field" and "'time'" in reason and "1900" in reason
    code, reason, _ = letter(profiles_dlq, people[5])
    assert code == "invalid_field" and "'time'" in reason and "UTC offset" in reason
    code, reason, _ = letter(profiles_dlq, people[6])
    assert code == "invalid_header" and "ce_source" in reason
    code, reason, value = letter(profiles_dlq, people[7])
    assert code == "unprocessable" and "CheckViolationError" in reason
    assert "display_name" in reason and value == raw(refused)
    code, reason, _ = letter(dead_letter_topic("matching"), answer["data"]["match_id"])
    assert code == "invalid_field" and "UTC offset" in reason

    # Every valid event applied at most once, the latest of each person exactly once, in order
    # per key; nothing of the poison.
    applied = Counter(
        json.loads(r.value)["correlationid"] for r in seen if r.topic == "enrolment-updated"
    )
    superseded = later[8]["id"]  # older than the flaky one, which went through on a retry
    assert {i: applied[i] for i in latest} == dict.fromkeys(latest, 1)
    assert set(applied) <= latest | {e["id"] for e in first}
    assert max(applied.values()) == 1
    assert not set(applied) & {*poison, superseded}
    rows = await db.fetch(
        "SELECT person_id, display_name FROM profiles.enrolments WHERE tenant_id = $1", tenant
    )
    names = {r["person_id"]: r["display_name"] for r in rows}
    assert names == {**dict.fromkeys(people, "Version 2"), people[8]: "Flaky"}

    # The group reaches the end of every partition it reads; both services stay ready.
    lag, _ = await wait_lag_zero(bootstrap, {group: read_by("profiles")}, timeout=30)
    assert not any(lag.values()), f"consumer lag left: {lag}"
    for proc in procs.values():
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"{proc.url}/readyz")).status_code == 200


def causes(records: list[Any]) -> set[str]:
    """The registrations behind the canonical events among `records`."""
    return {json.loads(r.value)["correlationid"] for r in records if r.topic == "enrolment-updated"}


async def test_a_partition_that_cannot_move_makes_the_service_not_ready_and_says_which(
    infra: Endpoints,
    db: asyncpg.Pool,
    services: tuple[dict[str, ServiceProcess], str],
) -> None:
    procs, _ = services
    profiles = procs["profiles"]
    tenant = unique("stuck")
    stuck = registration(tenant, f"{tenant}-p", "Stuck")

    async def readiness() -> tuple[int, dict[str, Any]]:
        async with httpx.AsyncClient() as client:
            answer = await client.get(f"{profiles.url}/readyz")
        return answer.status_code, answer.json()

    async with refusing(db, tenant):
        await publish_raw(
            infra.bootstrap_servers,
            [("mentor-registered", stuck["data"]["person_id"].encode(), raw(stuck))],
        )

        async def not_ready() -> bool:
            return (await readiness())[0] == 503

        await wait_until(not_ready, 60)
        _, body = await readiness()
        assert body["consuming"] is False and body["database"] is True
        (where,) = body["stalled"]
        topic, partition = where.split(":")
        assert topic == "mentor-registered"
        async with httpx.AsyncClient() as client:
            metrics = (await client.get(f"{profiles.url}/metrics")).text
        stalled = metric(metrics, "mentornet_partition_stalled_seconds", topic, partition)
        assert stalled > STALL_AFTER

    # The cause is gone (the trigger dropped): the partition moves, the service is ready again.
    async def ready() -> bool:
        return (await readiness())[0] == 200

    await wait_until(ready, 60)
    name = await db.fetchval(
        "SELECT display_name FROM profiles.enrolments WHERE tenant_id = $1", tenant
    )
    assert name == "Stuck"


def metric(text: str, name: str, topic: str, partition: str) -> float:
    for line in _lines(text, name):
        if f'topic="{topic}"' in line and f'partition="{partition}"' in line:
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} has no sample for {topic}:{partition}")


def _lines(text: str, name: str) -> Iterator[str]:
    return (line for line in text.splitlines() if line.startswith(name + "{"))
