"""Rules of the one ingress pipeline, on the real broker and database, with the services running:
events are known by (tenant, source, id); services reading one topic never wait for each other's
locks; signing keys guard the topics outsiders publish, never internal ones, and refuse replays.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from shared.contract.signature import sign
from shared.contract.topics import dead_letter_topic
from shared.local.infra import Endpoints
from shared.local.probes import wait_until
from shared.runtime.pipeline import consumed_lock
from tests.support import (
    ServiceProcess,
    TopicReader,
    cloud_event,
    fresh_group,
    publish_raw,
    running,
    topic_partitions,
    unique,
)

pytestmark = pytest.mark.integration

SIGNED, KEY = unique("signed"), "the-tenant-key"


@pytest.fixture(scope="module")
async def services(
    infra: Endpoints, service_env: dict[str, str]
) -> AsyncIterator[dict[str, ServiceProcess]]:
    """The three services, each in a group of its own; SIGNED must sign its events."""
    names = ["profiles", "matching", "notifications"]
    groups = {n: await fresh_group(infra.bootstrap_servers, n, f"rules-{n}") for n in names}
    env = {**service_env, "INGRESS_SIGNING_KEYS": json.dumps({SIGNED: KEY})}
    async with running(names, env, groups) as procs:
        yield procs


def person(person_id: str, role: str) -> dict[str, Any]:
    data = {
        "person_id": person_id,
        "program_id": "prog",
        "display_name": person_id.title(),
        "email": f"{person_id}@example.org",
        "languages": ["en"],
        "timezone": "Europe/Paris",
    }
    if role == "mentor":
        return {**data, "expertise": [{"topic": "python", "level": 4}], "capacity": 1}
    return {**data, "goals": [{"topic": "python", "priority": 1}]}


def signed(event: dict[str, Any]) -> bytes:
    return json.dumps({**event, "signature": sign(event, KEY.encode())}).encode()


async def test_one_event_id_in_two_tenants_is_applied_for_each(
    infra: Endpoints, db: asyncpg.Pool, services: dict[str, ServiceProcess]
) -> None:
    """Ids are the publisher's: two tenants (or two sources) may use the same one, and neither
    may suppress the other's event, even inside one batch."""
    acme, globex = unique("acme"), unique("globex")
    same_id = unique("evt")
    events = [
        cloud_event("mentor-registered", tenant, person("p-1", "mentor"), id=same_id, source=src)
        for tenant, src in ((acme, "hr/a"), (globex, "hr/a"), (acme, "hr/b"))
    ]
    events[2]["data"]["person_id"] = "p-2"  # same tenant and id, another source
    await publish_raw(  # one key, so one partition and, most likely, one batch
        infra.bootstrap_servers,
        [("mentor-registered", None, json.dumps(e).encode()) for e in events],
    )

    async def stored() -> bool:
        n = await db.fetchval(
            "SELECT count(*) FROM profiles.enrolments WHERE tenant_id = ANY($1::text[])",
            [acme, globex],
        )
        return bool(n == 3)

    await wait_until(stored, 30)
    rows = await db.fetch(
        "SELECT tenant_id, source FROM profiles.inbox WHERE event_id = $1 ORDER BY 1, 2", same_id
    )
    assert [(r["tenant_id"], r["source"]) for r in rows] == sorted(
        [(acme, "hr/a"), (globex, "hr/a"), (acme, "hr/b")]
    )


async def test_services_reading_one_topic_never_wait_for_each_others_locks(
    infra: Endpoints, db: asyncpg.Pool, services: dict[str, ServiceProcess]
) -> None:
    """Matching and notifications both read the apps' topics: while matching's offsets of every
    partition of `match-responded` are locked (as by a long transaction), notifications goes on."""
    bootstrap = infra.bootstrap_servers
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        cluster = str((await admin.describe_cluster())["cluster_id"])
    finally:
        await admin.close()
    partitions = await topic_partitions(bootstrap, ["match-responded"])
    tenant = unique("locks")
    answer = cloud_event(
        "match-responded",
        tenant,
        {"match_id": f"{tenant}-m", "person_id": "p-1", "decision": "accepted"},
    )

    async def in_inbox(schema: str) -> bool:
        return bool(
            await db.fetchval(
                f"SELECT count(*) FROM {schema}.inbox WHERE event_id = $1", answer["id"]
            )
        )

    def of_answer(record: Any) -> bool:
        return bool(json.loads(record.value).get("id") == answer["id"])

    async with TopicReader(bootstrap, dead_letter_topic("matching")) as matching_answers:
        async with db.acquire() as conn, conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext(k)) FROM unnest($1::text[]) AS k",
                [consumed_lock("matching", cluster, tp.topic, tp.partition) for tp in partitions],
            )
            await publish_raw(bootstrap, [("match-responded", b"m", json.dumps(answer).encode())])
            await wait_until(lambda: in_inbox("notifications"), 30)
            # matching waits for its own lock only: it has not answered yet
            assert not await matching_answers.drain(1, keep=of_answer)
        # Released: matching goes on, and refuses the answer (there is no such match).
        (letter,) = await matching_answers.collect(lambda rs: len(rs) >= 1, keep=of_answer)
    assert dict(letter.headers)["dlq-reason-code"] == b"unknown_match"


async def test_signing_keys_guard_outsiders_topics_never_internal_ones_and_refuse_replays(
    infra: Endpoints, db: asyncpg.Pool, services: dict[str, ServiceProcess]
) -> None:
    """A signing tenant's registrations flow through profiles to matching, whose input from
    profiles (internal, unsigned) is applied: a proposal follows. Its unsigned app events are
    refused (`bad_signature`); a signed event older than the freshness window is refused as a
    replay (`stale_signature`), whatever the inbox still remembers."""
    bootstrap = infra.bootstrap_servers
    mentor = cloud_event("mentor-registered", SIGNED, person("ann", "mentor"))
    mentee = cloud_event("mentee-registered", SIGNED, person("bob", "mentee"))
    old = (datetime.now(UTC) - timedelta(days=8)).isoformat()
    replay = cloud_event("mentor-registered", SIGNED, person("eve", "mentor"), time=old)
    unsigned_answer = cloud_event(
        "match-responded",
        SIGNED,
        {"match_id": f"{SIGNED}-m", "person_id": "bob", "decision": "accepted"},
    )
    async with TopicReader(
        bootstrap, "match-proposed", dead_letter_topic("profiles"), dead_letter_topic("matching")
    ) as reader:
        await publish_raw(
            bootstrap,
            [
                ("mentor-registered", b"ann", signed(mentor)),
                ("mentee-registered", b"bob", signed(mentee)),
                ("mentor-registered", b"eve", signed(replay)),
                ("match-responded", b"m", json.dumps(unsigned_answer).encode()),
            ],
        )

        def mine(r: Any) -> bool:
            try:
                return bool(json.loads(r.value).get("tenantid") == SIGNED)
            except ValueError:
                return False

        seen = await reader.collect(lambda rs: len(rs) >= 3, timeout=45, keep=mine)
        seen += await reader.drain(2, keep=mine)
    proposed = [json.loads(r.value)["data"] for r in seen if r.topic == "match-proposed"]
    assert [(p["mentee_id"], p["mentor_id"]) for p in proposed] == [("bob", "ann")]
    letters = {
        json.loads(r.value)["id"]: dict(r.headers)["dlq-reason-code"].decode()
        for r in seen
        if r.topic.startswith("dlq.")
    }
    assert letters == {replay["id"]: "stale_signature", unsigned_answer["id"]: "bad_signature"}
    stored = await db.fetchval(
        "SELECT count(*) FROM profiles.enrolments WHERE tenant_id = $1 AND person_id = 'eve'",
        SIGNED,
    )
    assert stored == 0
