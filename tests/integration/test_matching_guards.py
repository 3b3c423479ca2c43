"""matching's guards on the real database and broker: capacities hold across replicas' cached
pools and whatever a statement does, a session counts once, and an event matching refused is
applied once replayed after its cause was fixed."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from services.matching import repository as repo
from services.matching.flows import FlowProcess
from services.matching.handlers import (
    Replica,
    UnitOfWork,
    apply_events,
    on_cohort_requested,
    rematch,
)
from services.matching.metrics import MatchingMetrics
from services.matching.pools import PoolCache
from services.matching.repository import NewProposal, StalePool, insert_proposals
from shared.contract.envelope import CloudEvent
from shared.contract.events import CohortMatchRequested, EnrolmentUpdated, SessionCompleted
from shared.local.infra import Endpoints
from shared.ops.cli.dlq import DeadLetter, kafka_settings, replay
from shared.runtime.db.pool import create_pool, transaction
from shared.runtime.pipeline import Incoming
from tests.support import (
    ServiceProcess,
    TopicReader,
    enrolment_updated,
    ingress,
    of_tenant,
    publish_raw,
    running,
    unique,
    wait_for,
)

pytestmark = pytest.mark.integration
PROGRAM = "prog"
Record = tuple[str, bytes, bytes]


@pytest.fixture(scope="module")
async def matching(service_env: dict[str, str]) -> AsyncIterator[ServiceProcess]:
    async with running(["matching"], service_env) as procs:
        yield procs["matching"]


# --- pools and capacities, on the database alone -------------------------------------------------


async def seed(
    db: asyncpg.Pool, tenant: str, mentors: dict[str, tuple[int, int]], mentees: list[str]
) -> None:
    """Mentors (person -> (capacity, load)) and waiting mentees of one program, all compatible;
    the pool's version moved, as when mentors enrol."""
    await db.execute(
        """INSERT INTO matching.mentors (tenant_id, program_id, person_id, languages, timezone,
                expertise, capacity, load, registered_at)
           SELECT $1, $2, p, '{en}', 'Europe/Paris', '[{"topic": "python", "level": 4}]', c, l, now()
           FROM unnest($3::text[], $4::int[], $5::int[]) AS m(p, c, l)""",
        tenant,
        PROGRAM,
        list(mentors),
        [capacity for capacity, _ in mentors.values()],
        [load for _, load in mentors.values()],
    )
    await db.execute(
        """INSERT INTO matching.mentees (tenant_id, program_id, person_id, languages, timezone,
                goals, registered_at)
           SELECT $1, $2, p, '{en}', 'Europe/Paris', '[{"topic": "python", "priority": 1}]', now()
           FROM unnest($3::text[]) p""",
        tenant,
        PROGRAM,
        mentees,
    )
    await db.execute(
        "INSERT INTO matching.pool_versions (tenant_id, program_id, version) VALUES ($1, $2, 1)",
        tenant,
        PROGRAM,
    )


async def clean(db: asyncpg.Pool, tenant: str) -> None:
    """Nothing left for a service's expiry job to find in later runs."""
    for table in ("matches", "mentors", "mentees", "pool_versions"):
        await db.execute(f"DELETE FROM matching.{table} WHERE tenant_id = $1", tenant)


@pytest.fixture(scope="module")
async def service_db(infra: Endpoints) -> AsyncIterator[asyncpg.Pool]:
    """A pool as the matching service opens it (its schema, its JSON codec)."""
    pool = await create_pool(infra.database_url, "matching")
    yield pool
    await pool.close()


@asynccontextmanager
async def program_transaction(db: asyncpg.Pool, tenant: str) -> AsyncIterator[asyncpg.Connection]:
    """A transaction as a replica runs one, under the program's lock."""
    async with transaction(db) as conn:
        await repo.lock_programs(conn, [(tenant, PROGRAM)])
        yield conn


def a_replica() -> Replica:
    """What one matching process keeps across transactions (its own cache and metrics)."""
    return Replica(PoolCache(), MatchingMetrics.create(CollectorRegistry()), FlowProcess())


def free_places(pool: Any, mentor: str) -> int:
    i = pool.index[mentor]
    return int(pool.capacity[i] - pool.load[i])


def cause(tenant: str) -> CloudEvent:
    return CloudEvent.new(
        "cohort-match-requested", "tests", tenant, CohortMatchRequested(program_id=PROGRAM)
    )


async def test_a_replica_sees_the_last_place_another_replica_proposed(
    db: asyncpg.Pool, service_db: asyncpg.Pool
) -> None:
    """Replica A cached the program; replica B gives the mentor's last place: A's next look at
    the pool shows the mentor full, while B goes on with its own copy, without a reload."""
    tenant = unique("replicas")
    await seed(db, tenant, {"last": (2, 1)}, ["n1"])
    a, b = a_replica(), a_replica()
    now = datetime.now(UTC)
    try:
        async with program_transaction(service_db, tenant) as conn:
            assert free_places(await a.pools.get(conn, tenant, PROGRAM, now), "last") == 1
        async with program_transaction(service_db, tenant) as conn:
            own = await b.pools.get(conn, tenant, PROGRAM, now)
            work = UnitOfWork(now=now)
            work.wants(tenant, PROGRAM, cause(tenant))
            await rematch(conn, b, work)
        assert [r.topic for r in work.out] == ["match-proposed"]
        async with program_transaction(service_db, tenant) as conn:
            seen_by_a = await a.pools.get(conn, tenant, PROGRAM, now)
            seen_by_b = await b.pools.get(conn, tenant, PROGRAM, now)
        assert free_places(seen_by_a, "last") == 0, "A reloaded: B's proposal moved the version"
        assert seen_by_b is own, "B's copy took the place itself: it is not reloaded"
        assert free_places(own, "last") == 0
    finally:
        await clean(db, tenant)


async def test_a_borrowed_pool_stays_current_after_its_cohort_proposals(
    db: asyncpg.Pool, service_db: asyncpg.Pool
) -> None:
    """The cohort path (`PoolCache.borrow`): the replica that assigned the cohort keeps its pool,
    the other reloads."""
    tenant = unique("cohort-replicas")
    await seed(db, tenant, {"m1": (2, 0), "m2": (1, 0)}, ["n1", "n2", "n3", "n4"])
    a, b = a_replica(), a_replica()
    now = datetime.now(UTC)
    event = cause(tenant)
    try:
        async with program_transaction(service_db, tenant) as conn:
            await a.pools.get(conn, tenant, PROGRAM, now)
        async with program_transaction(service_db, tenant) as conn:
            own = await b.pools.get(conn, tenant, PROGRAM, now)
            await on_cohort_requested(conn, b, UnitOfWork(now=now), Incoming(None, event))
        async with program_transaction(service_db, tenant) as conn:
            seen_by_a = await a.pools.get(conn, tenant, PROGRAM, now)
            seen_by_b = await b.pools.get(conn, tenant, PROGRAM, now)
        assert seen_by_b is own, "the borrowed pool came back current"
        for pool in (seen_by_a, seen_by_b):
            assert (free_places(pool, "m1"), free_places(pool, "m2")) == (0, 0)
    finally:
        b.flows.close()
        await clean(db, tenant)


async def test_the_database_refuses_any_load_above_capacity(
    db: asyncpg.Pool, service_db: asyncpg.Pool
) -> None:
    """Whatever the statement: a load raised above capacity or below 0 is refused; fewer places
    than relationships in progress (a re-registration) and freeing a place are not."""
    tenant = unique("guard")
    await seed(db, tenant, {"full": (2, 2), "roomy": (2, 0)}, ["n1"])
    mentor = "UPDATE matching.mentors SET {} WHERE tenant_id = $1 AND person_id = $2"
    try:
        for change, person in (("load = load + 1", "full"), ("load = 3", "roomy")):
            with pytest.raises(asyncpg.CheckViolationError) as refused:
                await db.execute(mentor.format(change), tenant, person)
            assert refused.value.constraint_name == "mentor_within_capacity"
        with pytest.raises(asyncpg.CheckViolationError) as refused:
            await db.execute(mentor.format("load = -1"), tenant, "roomy")
        assert refused.value.constraint_name == "mentor_load_not_negative"

        # The guard of proposals still answers StalePool (the batch is retried on fresh pools).
        with pytest.raises(StalePool):
            async with program_transaction(service_db, tenant) as conn:
                await insert_proposals(conn, [proposal(tenant, "n1", "full")])

        # full re-registers with one place: accepted, its two relationships go on.
        registered = EnrolmentUpdated(
            program_id=PROGRAM,
            person_id="full",
            role="mentor",
            display_name="Full",
            email="full@example.org",
            languages=["en"],
            timezone="Europe/Paris",
            capacity=1,
            registered_at=datetime.now(UTC) + timedelta(seconds=1),
        )
        async with program_transaction(service_db, tenant) as conn:
            assert await repo.upsert_enrolments(conn, "mentor", [(tenant, registered)])
        await db.execute(mentor.format("load = load - 1"), tenant, "full")  # one relationship ends
        row = await db.fetchrow(
            "SELECT capacity, load FROM matching.mentors WHERE tenant_id = $1 AND person_id = $2",
            tenant,
            "full",
        )
        assert (row["capacity"], row["load"]) == (1, 1)
    finally:
        await clean(db, tenant)


def proposal(tenant: str, mentee: str, mentor: str) -> NewProposal:
    return NewProposal(
        match_id=unique("match"),
        tenant_id=tenant,
        program_id=PROGRAM,
        mentee_id=mentee,
        mentor_id=mentor,
        score=0.5,
        explanation="[]",
        expires_at=datetime.now(UTC) + timedelta(days=1),
    )


# --- sessions and replays, through a running matching service ---------------------------------


def answer(tenant: str, match_id: str, person: str) -> Record:
    data = {"match_id": match_id, "person_id": person, "decision": "accepted"}
    return ingress("match-responded", tenant, match_id, data)


def session(tenant: str, match_id: str, session_id: str, **ratings: int) -> Record:
    data = {"match_id": match_id, "session_id": session_id, "duration_minutes": 45, **ratings}
    return ingress("session-completed", tenant, match_id, data)


async def proposed_match(bootstrap: str, reader: TopicReader, tenant: str) -> str:
    """mentor m1 and mentee n1 enrol; the id of the match proposed to them."""
    await publish_raw(
        bootstrap,
        [enrolment_updated(tenant, "mentor", "m1"), enrolment_updated(tenant, "mentee", "n1")],
    )
    (record,) = await reader.collect(
        lambda rs: len(rs) >= 1, keep=lambda r: r.topic == "match-proposed" and of_tenant(tenant)(r)
    )
    match_id: str = json.loads(record.value)["data"]["match_id"]
    return match_id


async def confirm(bootstrap: str, reader: TopicReader, tenant: str, match_id: str) -> None:
    await publish_raw(bootstrap, [answer(tenant, match_id, "n1"), answer(tenant, match_id, "m1")])
    await reader.collect(
        lambda rs: len(rs) >= 1,
        keep=lambda r: r.topic == "match-confirmed" and of_tenant(tenant)(r),
    )


def of_match(match_id: str) -> Any:
    return lambda r: json.loads(r.value).get("data", {}).get("match_id") == match_id


async def test_a_session_reported_twice_counts_once(
    infra: Endpoints, db: asyncpg.Pool, matching: ServiceProcess
) -> None:
    """Two `session-completed` with different event ids but one (tenant, match, session): one
    session in the pair's history and the mentor's ratings, and no dead letter."""
    tenant = unique("sessions")
    bootstrap = infra.bootstrap_servers
    async with TopicReader(
        bootstrap, "match-proposed", "match-confirmed", "dlq.matching"
    ) as reader:
        match_id = await proposed_match(bootstrap, reader, tenant)
        await confirm(bootstrap, reader, tenant, match_id)
        sessions = [
            session(tenant, match_id, "s1", mentor_rating=2),
            session(tenant, match_id, "s1", mentor_rating=2),  # the app reported it again
            session(tenant, match_id, "s2", mentor_rating=4),
        ]
        await publish_raw(bootstrap, sessions)
        ids = [json.loads(value)["id"] for _, _, value in sessions]
        await wait_for(
            db,
            "SELECT count(*) = 3 FROM matching.inbox WHERE tenant_id = $1 AND event_id = ANY($2)",
            tenant,
            ids,
        )
        letters = await reader.drain(1.0, keep=lambda r: r.topic == "dlq.matching")
    assert [r for r in letters if of_match(match_id)(r)] == [], "a repeat is no mistake"
    history = await db.fetchrow("SELECT * FROM matching.pair_history WHERE match_id = $1", match_id)
    assert (history["sessions"], history["minutes"], history["mentor_rating_sum"]) == (2, 90, 6)
    ratings = await db.fetchrow(
        "SELECT rating_sum, rating_count FROM matching.mentor_ratings WHERE tenant_id = $1",
        tenant,
    )
    assert (ratings["rating_sum"], ratings["rating_count"]) == (6, 2)


async def test_a_repeated_session_is_counted_in_a_metric(
    db: asyncpg.Pool, service_db: asyncpg.Pool
) -> None:
    """What a replica does with a session reported again: nothing but count it."""
    tenant = unique("repeat")
    await seed(db, tenant, {"m1": (1, 1)}, [])
    match_id = unique("match")
    await db.execute(
        """INSERT INTO matching.matches (match_id, tenant_id, program_id, mentee_id, mentor_id,
                status, score, explanation, expires_at, confirmed_at)
           VALUES ($1, $2, $3, 'n1', 'm1', 'confirmed', 0.5, '[]', now(), now())""",
        match_id,
        tenant,
        PROGRAM,
    )
    registry = CollectorRegistry()
    replica = Replica(PoolCache(), MatchingMetrics.create(registry), FlowProcess())
    data = SessionCompleted(match_id=match_id, session_id="s1", duration_minutes=30)
    try:
        for _ in range(2):  # two event ids, one session
            event = CloudEvent.new("session-completed", "tests", tenant, data)
            async with transaction(service_db) as conn:
                assert await apply_events(conn, [Incoming(None, event)], replica) == []
        history = await db.fetchrow(
            "SELECT sessions FROM matching.pair_history WHERE match_id = $1", match_id
        )
        assert history["sessions"] == 1
        assert registry.get_sample_value("mentornet_sessions_repeated_total") == 1
    finally:
        await clean(db, tenant)


async def test_a_refused_session_is_applied_once_replayed_after_the_match_is_confirmed(
    infra: Endpoints, db: asyncpg.Pool, matching: ServiceProcess
) -> None:
    """A session reported while the match is only proposed is dead-lettered; once the match is
    confirmed, replaying the dead letter (`mentornet dlq replay`: the same bytes, the same event
    id) applies it, once."""
    tenant = unique("replay")
    bootstrap = infra.bootstrap_servers
    history = "SELECT sessions FROM matching.pair_history WHERE match_id = $1"
    async with TopicReader(
        bootstrap, "match-proposed", "match-confirmed", "dlq.matching"
    ) as reader:
        match_id = await proposed_match(bootstrap, reader, tenant)
        await publish_raw(bootstrap, [session(tenant, match_id, "s1", mentor_rating=5)])
        (letter,) = await reader.collect(
            lambda rs: len(rs) >= 1,
            keep=lambda r: r.topic == "dlq.matching" and of_match(match_id)(r),
        )
        assert dict(letter.headers)["dlq-reason-code"] == b"match_not_confirmed"
        await confirm(bootstrap, reader, tenant, match_id)

        dead = DeadLetter.of(letter)
        ((_, where),) = await replay(kafka_settings(bootstrap), [dead], dry_run=False)
        assert where.startswith("session-completed ")
        await wait_for(db, f"SELECT ({history}) = 1", match_id)

        # A second replay is a duplicate now; a later session shows it was read and dropped.
        await replay(kafka_settings(bootstrap), [dead], dry_run=False)
        await publish_raw(bootstrap, [session(tenant, match_id, "s2")])
        await wait_for(db, f"SELECT ({history}) = 2", match_id)
    ratings = await db.fetchrow(
        "SELECT rating_sum, rating_count FROM matching.mentor_ratings WHERE tenant_id = $1",
        tenant,
    )
    assert (ratings["rating_sum"], ratings["rating_count"]) == (5, 1)
