"""Two matching replicas in one consumer group: a rebalance and a crash mid-stream, and a replica
whose cached pool another replica's proposals made out of date. Every rule still holds on
everything that was proposed, and no mentor is ever over capacity."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import time
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from shared.local.infra import Endpoints
from shared.local.kafka import RawRecord, partition_of, partition_owners
from shared.local.probes import wait_until
from tests.support import (
    ServiceProcess,
    Services,
    TopicReader,
    cloud_event,
    enrolment_updated,
    fresh_group,
    of_tenant,
    publish_raw,
    unique,
    wait_for,
)

pytestmark = pytest.mark.fault
PROGRAMS, MENTORS, MENTEES = 6, 25, 80
LANGS = ["en", "fr", "de"]


def population(
    tenant: str, rng: random.Random
) -> tuple[list[tuple[str, bytes, bytes]], dict[tuple[str, str], dict[str, Any]]]:
    records, people = [], {}
    for p in range(PROGRAMS):
        program = f"prog-{p}"
        for role, count in (("mentor", MENTORS), ("mentee", MENTEES)):
            for i in range(count):
                person = f"{role}-{p}-{i}"
                data: dict[str, Any] = {
                    "program_id": program,
                    "person_id": person,
                    "role": role,
                    "display_name": person,
                    "email": f"{person}@x.example",
                    "languages": rng.sample(LANGS, rng.randint(1, 2)),
                    "timezone": "Europe/Paris",
                    "registered_at": "2026-01-01T00:00:00Z",
                }
                if role == "mentor":
                    data |= {
                        "expertise": [{"topic": "python", "level": rng.randint(1, 5)}],
                        "capacity": rng.randint(1, 3),
                    }
                else:
                    data |= {"goals": [{"topic": "python", "priority": 1}]}
                    if rng.random() < 0.3:
                        data["manager_id"] = f"mentor-{p}-{rng.randrange(MENTORS)}"
                people[(program, person)] = data
                event = cloud_event("enrolment-updated", tenant, data, source="mentornet/profiles")
                records.append(
                    (
                        "enrolment-updated",
                        f"{tenant}:{program}".encode(),
                        json.dumps(event).encode(),
                    )
                )
    rng.shuffle(records)  # mentors and mentees interleave, as in real life
    return records, people


async def test_rules_hold_across_a_rebalance_and_a_crash(
    infra: Endpoints, db: asyncpg.Pool, service_env: dict[str, str]
) -> None:
    rng = random.Random(42)
    tenant = unique("scale")
    records, people = population(tenant, rng)
    env = {
        **service_env,
        "CONSUMER_GROUP": await fresh_group(infra.bootstrap_servers, "matching", "matching-scale"),
        "BATCH_MAX_RECORDS": "50",
    }
    first, second = ServiceProcess("matching", dict(env)), ServiceProcess("matching", dict(env))
    third = ServiceProcess("matching", dict(env))
    third_started = False
    async with TopicReader(infra.bootstrap_servers, "match-proposed", "match-ended") as reader:
        first.start()
        await first.wait_ready()
        await first.wait_assigned()
        try:
            third_chunk = len(records) // 3
            await publish_raw(infra.bootstrap_servers, records[:third_chunk])
            second.start()  # a rebalance while the first replica is busy
            await publish_raw(infra.bootstrap_servers, records[third_chunk : 2 * third_chunk])
            await second.wait_ready()
            # Some mentees decline what they got, so slots move while replicas change.
            seen = await reader.collect(
                lambda rs: len(rs) >= 40, keep=of_tenant(tenant), timeout=60
            )
            declines = [json.loads(r.value)["data"] for r in seen if r.topic == "match-proposed"][
                :25
            ]
            await publish_raw(
                infra.bootstrap_servers,
                [
                    (
                        "match-responded",
                        d["match_id"].encode(),
                        json.dumps(
                            cloud_event(
                                "match-responded",
                                tenant,
                                {
                                    "match_id": d["match_id"],
                                    "person_id": d["mentee_id"],
                                    "decision": "declined",
                                },
                            )
                        ).encode(),
                    )
                    for d in declines
                ],
            )
            first.stop(signal.SIGKILL)  # a crash, and a second rebalance
            third.start()
            third_started = True
            await publish_raw(infra.bootstrap_servers, records[2 * third_chunk :])
            await wait_for(
                db,
                "SELECT count(*) = $2 FROM matching.mentees WHERE tenant_id = $1",
                tenant,
                PROGRAMS * MENTEES,
                timeout=120,
            )
            await asyncio.sleep(3)  # let the last batches settle
            events = seen + await reader.drain(3, keep=of_tenant(tenant))
        finally:
            for proc in (first, second, third) if third_started else (first, second):
                proc.stop()

    # The database's view: load and open proposals.
    for row in await db.fetch(
        """SELECT m.person_id, m.capacity, m.load,
                  (SELECT count(*) FROM matching.matches x WHERE x.tenant_id = m.tenant_id AND x.program_id = m.program_id
                     AND x.mentor_id = m.person_id AND x.status IN ('proposed', 'confirmed')) AS held
           FROM matching.mentors m WHERE m.tenant_id = $1""",
        tenant,
    ):
        assert row["held"] <= row["capacity"], f"{row['person_id']} over capacity"
        assert row["held"] == row["load"], "the load counter matches the matches"
    open_per_mentee = await db.fetch(
        """SELECT mentee_id, count(*) AS n FROM matching.matches WHERE tenant_id = $1 AND status = 'proposed'
           GROUP BY program_id, mentee_id HAVING count(*) > 1""",
        tenant,
    )
    assert open_per_mentee == []

    # The topic's view: every proposal obeys the rules, none is published twice under two ids.
    proposals = [json.loads(r.value)["data"] for r in events if r.topic == "match-proposed"]
    assert proposals, "the stream produced proposals"
    stored = await db.fetch(
        "SELECT match_id, mentee_id, mentor_id, status FROM matching.matches WHERE tenant_id = $1",
        tenant,
    )
    assert {p["match_id"] for p in proposals} <= {r["match_id"] for r in stored}
    declined = {(d["mentee_id"], d["mentor_id"]) for d in declines}
    for p in proposals:
        mentee, mentor = (
            people[(p["program_id"], p["mentee_id"])],
            people[(p["program_id"], p["mentor_id"])],
        )
        assert set(mentee["languages"]) & set(mentor["languages"])
        assert mentee.get("manager_id") != mentor["person_id"]
        assert mentee["person_id"] != mentor["person_id"]
    for r in stored:
        if (r["mentee_id"], r["mentor_id"]) in declined:
            assert r["status"] == "declined", "a pair that declined is never proposed again"


# --- a replica's cached pool against another replica's proposals ---------------------------------

OVER_CAPACITY = """
    SELECT * FROM (
        SELECT m.person_id, m.capacity, m.load,
               (SELECT count(*) FROM matching.matches x
                WHERE x.tenant_id = m.tenant_id AND x.program_id = m.program_id
                  AND x.mentor_id = m.person_id AND x.status IN ('proposed', 'confirmed')) AS held
        FROM matching.mentors m WHERE m.tenant_id = $1) AS mentor
    WHERE load > capacity OR held > capacity"""


async def other_matching_consumers(bootstrap: str, mine: str) -> list[str]:
    """Consumer groups other than `mine` with members reading matching's topics now (a matching
    started by another test on this broker)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    others = []
    try:
        for group, _ in await admin.list_consumer_groups():
            if group == mine:
                continue
            (response,) = await admin.describe_consumer_groups([group])  # one by one: robust
            _, _, state, _, _, members = response.groups[0][:6]
            # a member's metadata lists the topics it subscribed to; only matching reads this one
            if state not in ("Empty", "Dead") and any(
                b"program-configured" in m[-2] for m in members
            ):
                others.append(group)
    finally:
        await admin.close()
    return others


async def alone_on_the_broker(bootstrap: str, group: str, timeout: float = 60) -> None:
    """Wait until no other matching consumes (fail otherwise: never skip): the shared database
    keeps one offset per partition, so another matching would apply some records in our
    replicas' place."""
    deadline = time.monotonic() + timeout
    while others := await other_matching_consumers(bootstrap, group):
        if time.monotonic() > deadline:
            pytest.fail(f"another matching consumes this broker's topics: {others}")
        await asyncio.sleep(1)


def configured(tenant: str, program: str, **settings: Any) -> RawRecord:
    event = cloud_event("program-configured", tenant, {"program_id": program, **settings})
    return ("program-configured", program.encode(), json.dumps(event).encode())


async def stale_pools(replica: ServiceProcess) -> float:
    async with httpx.AsyncClient() as client:
        page = (await client.get(f"{replica.url}/metrics")).text
    return sum(
        float(line.split()[1])
        for line in page.splitlines()
        if line.startswith("mentornet_stale_pools_total ")
    )


async def test_a_replica_with_a_cached_pool_never_proposes_a_place_another_replica_gave(
    infra: Endpoints, db: asyncpg.Pool, service_env: dict[str, str]
) -> None:
    """Replica A caches a program's pool (it handles the program's `program-configured`); replica
    B (which handles its enrolments) then gives the best mentors' last places; then A proposes.
    Sampled all along, no mentor's load or open matches ever exceed their capacity, and A never
    proposes to a full mentor: its copy saw the version moved and was reloaded (the database
    would refuse such a proposal, but a refusal costs a retried batch)."""
    bootstrap = infra.bootstrap_servers
    tenant = unique("replicas")
    group = await fresh_group(bootstrap, "matching", "matching-cached")
    await alone_on_the_broker(bootstrap, group)
    env = {**service_env, "CONSUMER_GROUP": group}
    services = Services()
    replicas = [services.add(label, "matching", env) for label in ("first", "second")]
    async with services:
        owners = await two_owners(bootstrap, group)
        stop = asyncio.Event()
        watcher = asyncio.create_task(watch_capacities(db, tenant, stop))
        try:
            await cached_pool_scenario(bootstrap, db, tenant, owners)
        finally:
            stop.set()
            samples, over = await watcher
        refused = [await stale_pools(replica) for replica in replicas]
        rebalanced = await partition_owners(bootstrap, group) != owners
        others = await other_matching_consumers(bootstrap, group)
    proposed = await db.fetch(
        "SELECT mentee_id, mentor_id FROM matching.matches WHERE tenant_id = $1", tenant
    )
    assert samples > 20 and over == [], f"over capacity in {len(over)} of {samples} samples"
    pairs = sorted((r["mentee_id"], r["mentor_id"]) for r in proposed)
    assert sorted(mentor for _, mentor in pairs) == ["best-0", "best-1", "best-2", "far", "far"]
    assert [mentor for mentee, mentor in pairs if mentee in ("n3", "n4")] == ["far", "far"]
    assert not rebalanced, "the partitions moved: A and B may not have been who they were"
    assert refused == [0, 0], "a replica proposed to a full mentor (the database refused it)" + (
        f"; another matching joined meanwhile: {others}" if others else ""
    )


async def two_owners(bootstrap: str, group: str) -> dict[tuple[str, int], str]:
    """The group's partitions, once they are shared by its two members."""
    owners: dict[tuple[str, int], str] = {}

    async def both_assigned() -> bool:
        nonlocal owners
        owners = await partition_owners(bootstrap, group)
        return len(set(owners.values())) == 2

    await wait_until(both_assigned, 60)
    return owners


async def watch_capacities(
    db: asyncpg.Pool, tenant: str, stop: asyncio.Event
) -> tuple[int, list[Any]]:
    """Sample the database until `stop`: how many samples, and every mentor seen over capacity."""
    samples, over = 0, []
    while not stop.is_set():
        over += await db.fetch(OVER_CAPACITY, tenant)
        samples += 1
        await asyncio.sleep(0.01)
    return samples, over


async def cached_pool_scenario(
    bootstrap: str, db: asyncpg.Pool, tenant: str, owners: dict[tuple[str, int], str]
) -> None:
    """B fills the best mentors while A holds the program's pool from before, then A proposes."""
    # A program whose settings one replica reads (A) and whose enrolments the other (B).
    program = next(
        p
        for p in (f"prog-{i}" for i in range(100))
        if owners[partition_of("program-configured", p)]
        != owners[partition_of("enrolment-updated", f"{tenant}:{p}")]
    )
    mentees = "SELECT count(*) = $2 FROM matching.mentees WHERE tenant_id = $1"
    matches = "SELECT count(*) = $2 FROM matching.matches WHERE tenant_id = $1"
    # B: three best mentors with one place, one far away with three, and a mentee nobody can
    # mentor (no shared language): the program has a waitlist.
    far = {"timezone": "Asia/Tokyo", "capacity": 3, "expertise": [{"topic": "python", "level": 1}]}
    await publish_raw(
        bootstrap,
        [enrolment_updated(tenant, "mentor", f"best-{i}", program) for i in range(3)]
        + [enrolment_updated(tenant, "mentor", "far", program, **far)]
        + [enrolment_updated(tenant, "mentee", "alone", program, languages=["ja"])],
    )
    await wait_for(db, mentees, tenant, 1)
    # A: the program's settings (far is too far for now); A matches the waitlist, and caches
    # the pool with every best mentor free.
    rules = {"max_timezone_difference_hours": 2}
    await publish_raw(bootstrap, [configured(tenant, program, rules=rules)])
    await wait_for(db, "SELECT 1 FROM matching.programs WHERE tenant_id = $1", tenant)
    # B: five mentees; the best mentors' last places go to three, two wait.
    await publish_raw(
        bootstrap, [enrolment_updated(tenant, "mentee", f"n{i}", program) for i in range(5)]
    )
    await wait_for(db, mentees, tenant, 6)
    await wait_for(db, matches, tenant, 3)
    # A: far is allowed now; A proposes to the two waiting.
    await publish_raw(bootstrap, [configured(tenant, program)])
    await wait_for(db, matches, tenant, 5)
    await asyncio.sleep(0.5)  # nothing more comes
