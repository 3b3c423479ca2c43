"""matching keeps answering while it solves a big cohort: the solve runs off the event loop, so
/healthz answers in time and the consumer keeps its partitions (no rebalance) meanwhile."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest

from shared.local.infra import Endpoints
from shared.local.kafka import group_members
from tests.support import ServiceProcess, cloud_event, fresh_group, publish_raw, running, unique

pytestmark = pytest.mark.integration

MENTEES, MENTORS = 50_000, 10_000
POLL_EVERY = 0.2  # seconds between two /healthz requests
ANSWER_WITHIN = 1.0  # seconds: a later answer means the event loop was blocked
TOPICS = [f"topic {i:02d}" for i in range(30)]
ZONES = ["America/New_York", "Europe/London", "Europe/Paris", "Asia/Kolkata", "Asia/Tokyo"]
LANGUAGES = [["en"], ["en"], ["en"], ["en", "fr"], ["fr"], ["de", "en"]]
DEPARTMENTS = [f"department {i}" for i in range(10)]
CONFIG = {
    "program_id": "prog",
    "mode": "cohort",
    "rules": {"max_timezone_difference_hours": 8, "min_seniority_gap": 1},
}


@pytest.fixture
async def matching(infra: Endpoints, service_env: dict[str, str]) -> AsyncIterator[ServiceProcess]:
    """A matching service alone in a consumer group of its own: any change of its membership
    is a rebalance of this service's doing."""
    group = await fresh_group(infra.bootstrap_servers, "matching", "responsive")
    env = {**service_env, "OPENBLAS_NUM_THREADS": "1"}  # as in the image (see candidates.py)
    async with running(["matching"], env, groups={"matching": group}) as procs:
        await procs["matching"].wait_assigned()
        yield procs["matching"]


async def seed(db: asyncpg.Pool, tenant: str) -> None:
    """A cohort program with MENTORS mentors (one place each) and MENTEES waiting mentees,
    written straight into matching's tables."""
    rng = random.Random(7)
    now = datetime.now(UTC)

    def topics(count: int) -> list[str]:
        return list(dict.fromkeys(rng.choices(TOPICS, [1 / (i + 1) for i in range(30)], k=count)))

    def person(prefix: str, i: int, seniority: tuple[int, int]) -> tuple[Any, ...]:
        return (
            tenant,
            "prog",
            f"{prefix}{i:05d}",
            rng.choice(LANGUAGES),
            rng.choice(ZONES),
            rng.choice(DEPARTMENTS),
            rng.randint(*seniority),
            now,
        )

    mentors = [
        (
            *person("m", j, (3, 10)),
            json.dumps([{"topic": t, "level": rng.randint(2, 5)} for t in topics(4)]),
            1,
        )
        for j in range(MENTORS)
    ]
    mentees = [
        (
            *person("n", i, (1, 6)),
            json.dumps([{"topic": t, "priority": p + 1} for p, t in enumerate(topics(3))]),
        )
        for i in range(MENTEES)
    ]
    shared = ["tenant_id", "program_id", "person_id", "languages", "timezone", "department"]
    shared += ["seniority", "registered_at"]
    async with db.acquire() as conn, conn.transaction():
        await conn.copy_records_to_table(
            "mentors",
            schema_name="matching",
            columns=[*shared, "expertise", "capacity"],
            records=mentors,
        )
        await conn.copy_records_to_table(
            "mentees", schema_name="matching", columns=[*shared, "goals"], records=mentees
        )
        await conn.execute(
            """INSERT INTO matching.programs (tenant_id, program_id, config, updated_at)
               VALUES ($1, 'prog', $2::jsonb, now())""",
            tenant,
            json.dumps(CONFIG),
        )


async def forget(db: asyncpg.Pool, tenant: str) -> None:
    """The tenant's rows out of matching's tables, so they weigh on no other test."""
    for table in ("matches", "mentors", "mentees", "programs", "pool_versions"):
        await db.execute(f"DELETE FROM matching.{table} WHERE tenant_id = $1", tenant)


async def membership(bootstrap: str, group: str) -> tuple[str, list[tuple[str, bytes]]]:
    """The consumer group's state and each member's id and partition assignment."""
    state, members = await group_members(bootstrap, group)
    return state, sorted((member[0], bytes(member[-1])) for member in members)


class HealthProbe:
    """Asks /healthz every POLL_EVERY seconds while the block runs, as a kubelet would; keeps
    how long each answer took (None: no answer within ANSWER_WITHIN)."""

    def __init__(self, url: str) -> None:
        self.url = f"{url}/healthz"
        self.answers: list[float | None] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> HealthProbe:
        self._task = asyncio.create_task(self._poll())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _poll(self) -> None:
        async with httpx.AsyncClient() as client:
            while True:
                started = time.monotonic()
                try:
                    response = await asyncio.wait_for(client.get(self.url), ANSWER_WITHIN)
                    took = time.monotonic() - started
                    self.answers.append(took if response.status_code == 200 else None)
                except (TimeoutError, httpx.HTTPError):
                    self.answers.append(None)
                await asyncio.sleep(max(0.0, POLL_EVERY - (time.monotonic() - started)))

    @property
    def late(self) -> int:
        return sum(a is None for a in self.answers)


async def cohort_proposals(service: ServiceProcess) -> float:
    """How many proposals this very service made in cohort mode (from its /metrics)."""
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{service.url}/metrics", timeout=5)).text
    line = next(
        (x for x in text.splitlines() if x.startswith('mentornet_proposals_total{mode="cohort"}')),
        "_ 0",
    )
    return float(line.split()[-1])


async def test_matching_answers_and_keeps_its_partitions_while_it_solves_a_big_cohort(
    infra: Endpoints, db: asyncpg.Pool, matching: ServiceProcess
) -> None:
    tenant = unique("responsive")
    bootstrap, group = infra.bootstrap_servers, matching.env["CONSUMER_GROUP"]
    try:
        await seed(db, tenant)
        before = await membership(bootstrap, group)
        request = cloud_event("cohort-match-requested", tenant, {"program_id": "prog"})
        async with HealthProbe(matching.url) as probe:
            started = time.monotonic()
            await publish_raw(
                bootstrap, [("cohort-match-requested", b"prog", json.dumps(request).encode())]
            )
            proposed = 0
            while not proposed:  # the proposals are written in the solve's transaction
                assert time.monotonic() - started < 75, f"no proposals yet\n{matching.tail()}"
                await asyncio.sleep(0.2)
                proposed = await db.fetchval(
                    "SELECT count(*) FROM matching.matches WHERE tenant_id = $1", tenant
                )
            solved_in = time.monotonic() - started
        after = await membership(bootstrap, group)

        assert await cohort_proposals(matching) == proposed, "another service solved the cohort"
        assert proposed >= 0.9 * MENTORS, "nearly every mentor's place is proposed"
        assert len(probe.answers) >= 5, f"the solve took {solved_in:.1f}s: too short to tell"
        answered = [a for a in probe.answers if a is not None]
        problems = []
        if probe.late:
            problems.append(
                f"{probe.late} of {len(probe.answers)} /healthz requests got no answer within"
                f" {ANSWER_WITHIN}s during a {solved_in:.1f}s solve (slowest answered:"
                f" {max(answered, default=0):.2f}s)"
            )
        if after != before or after[0] != "Stable":
            problems.append(f"the consumer group rebalanced: {before} became {after}")
        assert not problems, "\n".join(problems)
    finally:
        await forget(db, tenant)
