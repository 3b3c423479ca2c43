"""Weights learned from outcomes, on the real broker and database: mentees who decline far-away
experts and accept mentors in their own time zone teach the program's weights (`weights-learned`,
`program show`), and the next mentee is proposed a near mentor where the configured weights chose
a far one; turned off, learning leaves the program's own weights in force. On the database alone:
each learning run is announced once, under an id a retry keeps, and only when due."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from cloudevents.core.bindings.kafka import KafkaMessage, from_structured
from cloudevents.core.formats.json import JSONFormat
from prometheus_client import CollectorRegistry

from services.matching import repository as repo
from services.matching.flows import FlowProcess
from services.matching.handlers import Replica, learn_due
from services.matching.metrics import MatchingMetrics
from services.matching.pools import PoolCache
from shared.local.infra import Endpoints
from shared.local.stack import REPO_ROOT
from shared.runtime.db.pool import create_pool, transaction
from tests.support import (
    ServiceProcess,
    TopicReader,
    enrolment_updated,
    fresh_group,
    ingress,
    of_tenant,
    publish_raw,
    running,
    unique,
    wait_for,
)

pytestmark = pytest.mark.integration
PROGRAM = "prog"
TIMERS = {"LEARNING_INTERVAL_SECONDS": "0.3", "EXPIRY_INTERVAL_SECONDS": "0.5"}
Record = tuple[str, bytes, bytes]

FAR = {"far-la": "America/Los_Angeles", "far-ny": "America/New_York"}  # experts, hours away
NEAR = {"near-paris": "Europe/Paris", "near-berlin": "Europe/Berlin"}  # some python, close by
MENTEES = [f"m{i:02d}" for i in range(12)]  # in Paris, each declines both experts


@pytest.fixture(scope="module")
async def matching(infra: Endpoints, service_env: dict[str, str]) -> AsyncIterator[ServiceProcess]:
    """matching in a consumer group of its own, learning every 0.3 s."""
    group = await fresh_group(infra.bootstrap_servers, "matching", "learning")
    async with running(["matching"], {**service_env, **TIMERS}, groups={"matching": group}) as ps:
        await ps["matching"].wait_assigned()
        yield ps["matching"]


def configured(tenant: str, **settings: Any) -> Record:
    return ingress("program-configured", tenant, PROGRAM, {"program_id": PROGRAM, **settings})


def mentor(tenant: str, person: str, timezone: str, level: int) -> Record:
    expertise = [{"topic": "python", "level": level}]
    return enrolment_updated(
        tenant, "mentor", person, timezone=timezone, expertise=expertise, capacity=20
    )


def answer(tenant: str, proposed: dict[str, Any], person: str, decision: str) -> Record:
    data = {"match_id": proposed["match_id"], "person_id": person, "decision": decision}
    return ingress("match-responded", tenant, proposed["match_id"], data)


def answers(tenant: str, proposed: dict[str, Any]) -> list[Record]:
    """The mentee declines a far expert; a near mentor is accepted by both."""
    if proposed["mentor_id"] in FAR:
        return [answer(tenant, proposed, proposed["mentee_id"], "declined")]
    people = (proposed["mentee_id"], proposed["mentor_id"])
    return [answer(tenant, proposed, person, "accepted") for person in people]


def of(tenant: str, *types: str) -> Any:
    return lambda r: r.topic in types and of_tenant(tenant)(r)


def data_of(records: list[Any], type_: str) -> list[dict[str, Any]]:
    return [json.loads(r.value)["data"] for r in records if r.topic == type_]


def show(infra: Endpoints, tenant: str, *args: str) -> str:
    """`mentornet program show` as a program manager runs it."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "shared.ops.cli",
            "program",
            "show",
            PROGRAM,
            "--tenant",
            tenant,
            *args,
        ],
        cwd=REPO_ROOT,
        env={
            **os.environ,
            "DATABASE_URL": infra.database_url,
            "COLUMNS": "250",
            "PYTHONIOENCODING": "utf-8",
        },
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


async def next_proposal(reader: TopicReader, tenant: str, mentee: str) -> dict[str, Any]:
    def wanted(r: Any) -> bool:
        return (
            of(tenant, "match-proposed")(r) and json.loads(r.value)["data"]["mentee_id"] == mentee
        )

    (record,) = await reader.collect(lambda rs: len(rs) >= 1, keep=wanted)
    found: dict[str, Any] = json.loads(record.value)["data"]
    return found


# --- on the database alone -------------------------------------------------------------------


@pytest.fixture(scope="module")
async def service_db(infra: Endpoints) -> AsyncIterator[asyncpg.Pool]:
    """A pool as the matching service opens it (its schema, its JSON codec)."""
    pool = await create_pool(infra.database_url, "matching")
    yield pool
    await pool.close()


def a_replica() -> Replica:
    return Replica(PoolCache(), MatchingMetrics.create(CollectorRegistry()), FlowProcess())


async def configure(db: asyncpg.Pool, tenant: str, **settings: Any) -> None:
    config = {"program_id": PROGRAM, "learning_min_outcomes": 10, **settings}
    await db.execute(
        """INSERT INTO programs (tenant_id, program_id, config, updated_at)
           VALUES ($1, $2, $3, clock_timestamp())
           ON CONFLICT (tenant_id, program_id) DO UPDATE
           SET config = EXCLUDED.config, updated_at = EXCLUDED.updated_at""",
        tenant,
        PROGRAM,
        config,
    )


async def outcomes(db: asyncpg.Pool, tenant: str, statuses: list[str]) -> list[str]:
    """Matches of the program, one per status: close mentors confirmed, far ones declined."""
    ids = [str(uuid.uuid4()) for _ in statuses]
    criteria = [
        {"timezone": 1.0 if s != "declined" else 0.2, "topic_fit": 0.5, "load": 0.9}
        for s in statuses
    ]
    await db.execute(
        """INSERT INTO matches (match_id, tenant_id, program_id, mentee_id, mentor_id, status,
                score, explanation, expires_at, criteria)
           SELECT id, $1, $2, 'mentee-' || id, 'mentor', s, 0.5, '[]', now() + interval '1 day',
                  c::jsonb
           FROM unnest($3::text[], $4::text[], $5::text[]) AS x(id, s, c)""",
        tenant,
        PROGRAM,
        ids,
        statuses,
        [json.dumps(c) for c in criteria],
    )
    return ids


async def run(db: asyncpg.Pool, tenant: str, replica: Replica) -> list[dict[str, Any]]:
    """One learning run of the program, committed: the events it enqueued."""
    async with transaction(db) as conn:
        records = await learn_due(conn, replica, (tenant, PROGRAM))
    return [json.loads(r.value) for r in records]


async def test_a_learning_run_is_announced_once_under_an_id_a_retry_keeps(
    service_db: asyncpg.Pool,
) -> None:
    tenant, db = unique("learnonce"), service_db
    one, two = a_replica(), a_replica()
    try:
        await configure(db, tenant, learning="on")
        await outcomes(db, tenant, ["declined"] * 5 + ["confirmed"] * 4)
        assert await run(db, tenant, one) == [], "9 outcomes: not yet"
        await outcomes(db, tenant, ["proposed", "cancelled", "completed"])  # 1 more outcome

        # A run rolled back (the replica died before its commit) is retried under the same id.
        with pytest.raises(RuntimeError):
            async with transaction(db) as conn:
                lost = await learn_due(conn, one, (tenant, PROGRAM))
                raise RuntimeError("crash before the commit")
        (event,) = await run(db, tenant, two)
        assert [json.loads(r.value)["id"] for r in lost] == [event["id"]]
        assert event["type"] == "weights-learned" and event["data"]["outcomes"] == 10
        assert event["data"]["in_force"] is True
        assert await run(db, tenant, one) == [], "learned already: another replica finds nothing"

        # A low closing rating from the mentee makes a completed relationship a failure.
        (completed,) = await outcomes(db, tenant, ["completed"])
        await db.execute(
            """INSERT INTO feedback (tenant_id, match_id, person_id, role, kind, checkin, rating,
                    learned, given_at)
               VALUES ($1, $2, 'mentee-' || $2, 'mentee', 'closing', 0, 2, false, now())""",
            tenant,
            completed,
        )
        async with db.acquire() as conn:
            read = await repo.read_outcomes(conn, tenant, PROGRAM)
        assert [o.success for o in read.outcomes].count(False) == 6
        assert read.number == 2

        # Due again after a step of 10 outcomes (one is there), or once configured anew.
        await outcomes(db, tenant, ["expired"] * 8)
        assert await run(db, tenant, one) == [], "9 new outcomes: not yet"
        await configure(db, tenant, learning="on", weight_bounds={"timezone": {"max": 0.5}})
        (again,) = await run(db, tenant, one)
        assert again["id"] != event["id"] and again["data"]["weights"]["timezone"] == 0.5
        await outcomes(db, tenant, ["declined"] * 10)
        await configure(db, tenant, learning="off")
        assert await run(db, tenant, two) == [], "learning off: never learned"
        assert two.metrics.weights_learned.labels("true")._value.get() == 1
    finally:
        for table in ("matches", "feedback", "programs", "learning_runs", "learned_weights"):
            await db.execute(f"DELETE FROM {table} WHERE tenant_id = $1", tenant)


# --- through the running service ------------------------------------------------------------


async def test_outcomes_change_the_weights_and_then_the_proposals(
    infra: Endpoints, db: asyncpg.Pool, matching: ServiceProcess
) -> None:
    tenant, bootstrap = unique("learn"), infra.bootstrap_servers
    settings = {
        "learning": "on",
        "learning_min_outcomes": 10,
        "weight_bounds": {"topic_fit": {"min": 0.1, "max": 0.6}},
    }
    topics = ("match-proposed", "match-confirmed", "weights-learned")
    async with TopicReader(bootstrap, *topics) as reader:
        await publish_raw(bootstrap, [configured(tenant, **settings)])
        await wait_for(db, "SELECT true FROM matching.programs WHERE tenant_id = $1", tenant)
        await publish_raw(
            bootstrap,
            [mentor(tenant, p, tz, 5) for p, tz in FAR.items()]
            + [mentor(tenant, p, tz, 2) for p, tz in NEAR.items()],
        )
        await wait_for(db, "SELECT count(*) = 4 FROM matching.mentors WHERE tenant_id = $1", tenant)
        await publish_raw(
            bootstrap,
            [enrolment_updated(tenant, "mentee", m) for m in MENTEES]
            # speaks no mentor's language: waits, and `program show` says why
            + [enrolment_updated(tenant, "mentee", "hans", languages=["de"])],
        )

        # 1. Each mentee declines the experts (the configured weights' choice), accepts near.
        seen: list[Any] = []
        confirmed: set[str] = set()
        deadline = asyncio.get_running_loop().time() + 40
        while len(confirmed) < len(MENTEES):
            assert asyncio.get_running_loop().time() < deadline, f"{len(confirmed)} confirmed"
            batch = await reader.drain(0.3, of(tenant, *topics))
            seen += batch
            await publish_raw(
                bootstrap, [a for p in data_of(batch, "match-proposed") for a in answers(tenant, p)]
            )
            confirmed |= {c["mentee_id"] for c in data_of(batch, "match-confirmed")}
        first: dict[str, str] = {}
        for p in data_of(seen, "match-proposed"):
            first.setdefault(p["mentee_id"], p["mentor_id"])
        assert set(first.values()) <= set(FAR), "the configured weights choose the experts"

        # 2. The 36 outcomes teach the weights: the time zone first, topic fit at its lower bound.
        outcomes = 3 * len(MENTEES)
        # the last run read at least 27: from there, the 36th is less than a step away
        await wait_for(
            db,
            "SELECT outcomes > $2 FROM matching.learned_weights WHERE tenant_id = $1",
            tenant,
            outcomes - repo.LEARNING_STEP,
        )
        seen += await reader.drain(1.0, of(tenant, *topics))
        taught = data_of(seen, "weights-learned")
        learned = taught[-1]
        for record in (r for r in seen if r.topic == "weights-learned"):  # as the SDK reads it
            headers = {k: v for k, v in record.headers or ()}
            assert headers.get("content-type") == b"application/cloudevents+json"
            assert not any(k.startswith("ce_") for k in headers)
            message = KafkaMessage(headers=headers, key=record.key, value=record.value)
            data = from_structured(message, JSONFormat()).get_data()
            assert isinstance(data, dict) and data["outcomes"] >= 10
        stored = await db.fetchrow(
            "SELECT outcomes, weights FROM matching.learned_weights WHERE tenant_id = $1", tenant
        )
        assert learned["outcomes"] == stored["outcomes"]
        assert learned["weights"] == json.loads(stored["weights"])
        assert learned["in_force"] is True and 10 <= learned["outcomes"] <= outcomes
        weights = learned["weights"]
        assert max(weights, key=weights.__getitem__) == "timezone"
        assert learned["learned"]["topic_fit"] == 0 and weights["topic_fit"] == 0.1
        assert learned["configured"]["topic_fit"] == 0.4 and weights != learned["configured"]

        # 3. `program show`: the weights in force, the outcomes behind them, the waiting reasons.
        figures = json.loads(await asyncio.to_thread(show, infra, tenant, "--json"))
        assert figures["learning"]["learned_weights_in_force"] is True
        assert figures["learning"]["outcomes"] == learned["outcomes"]
        assert figures["configuration"]["weights_in_force"] == weights
        assert figures["configuration"]["settings"]["weight_bounds.topic_fit"] == {
            "min": 0.1,
            "max": 0.6,
        }
        assert figures["mentees"]["waiting_reasons"]["no_common_language"] == 1
        text = await asyncio.to_thread(show, infra, tenant)
        assert f"weights in force: learned from {learned['outcomes']} outcomes" in text
        assert "1 waiting: 1 no mentor speaks their language" in text

        # 4. The next mentee is proposed a near mentor, scored with the learned weights.
        await publish_raw(bootstrap, [enrolment_updated(tenant, "mentee", "nina")])
        proposed = await next_proposal(reader, tenant, "nina")
        assert proposed["mentor_id"] in NEAR
        shares = {i["criterion"]: i["weight"] for i in proposed["explanation"]}
        assert shares["timezone"] == pytest.approx(
            weights["timezone"] / sum(weights.values()), 1e-3
        )

        # 5. Learning turned off: the program's own weights again, the expert for the next one.
        await publish_raw(bootstrap, [configured(tenant, **{**settings, "learning": "off"})])
        await wait_for(
            db,
            "SELECT config->>'learning' = 'off' FROM matching.programs WHERE tenant_id = $1",
            tenant,
        )
        await publish_raw(bootstrap, [enrolment_updated(tenant, "mentee", "omar")])
        assert (await next_proposal(reader, tenant, "omar"))["mentor_id"] in FAR
