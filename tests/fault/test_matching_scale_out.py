"""Two matching replicas in one consumer group, a rebalance and a crash mid-stream: every rule
still holds on everything that was proposed."""

from __future__ import annotations

import asyncio
import json
import random
import signal
from typing import Any

import asyncpg
import pytest

from shared.local.infra import Endpoints
from tests.support import (
    ServiceProcess,
    TopicReader,
    cloud_event,
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
