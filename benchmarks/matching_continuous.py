"""matching_continuous: latency from an HR registration being published to its proposal being
readable on `match-proposed`, through profiles and matching, with a 10,000-mentor pool and
mentees arriving at a steady rate.

    python -m benchmarks.matching_continuous [--quick] [--mentors N] [--rate R] [--seconds S]
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer

from benchmarks._common import arguments, emit, machine, peak_rss_mb
from shared.local.infra import real_infrastructure
from shared.local.kafka import TopicReader, fresh_group, publish_raw
from shared.local.probes import wait_for
from shared.local.processes import running
from shared.local.simulation import Population


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def measure(
    bootstrap: str, database_url: str, mentors: int, rate: float, seconds: float
) -> dict[str, Any]:
    tenant = f"bench-{uuid.uuid4().hex[:8]}"
    program = "program-1"
    population = Population(tenant, programs=1, seed=13)
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "DATABASE_URL": database_url,
        "LOG_LEVEL": "WARNING",
    }
    db = await asyncpg.connect(database_url)
    # New groups pinned at the topics' ends: the services see this run's events only, whatever
    # earlier runs left on the same stack.
    services = ["profiles", "matching"]
    groups = {s: await fresh_group(bootstrap, s, f"bench-{s}") for s in services}
    async with running(services, env, groups) as procs:
        pool = [
            population.event("mentor-registered", population.mentor(i, program))
            for i in range(mentors)
        ]
        started = time.perf_counter()
        await publish_raw(bootstrap, ((r.topic, r.key, r.value) for r in pool))
        await wait_for(
            db,
            "SELECT count(*) = $2 FROM matching.mentors WHERE tenant_id = $1",
            tenant,
            mentors,
            timeout=300,
        )
        pool_loaded_s = time.perf_counter() - started

        n = int(rate * seconds)
        # Steady state: one mentee first, so matching has read the pool into its cache (a
        # replica reads a program's pool once, then only after a mentor changes).
        warm_up = population.event("mentee-registered", population.mentee(n, program))
        await publish_raw(bootstrap, [(warm_up.topic, warm_up.key, warm_up.value)])
        await wait_for(db, "SELECT count(*) > 0 FROM matching.matches WHERE tenant_id = $1", tenant)
        mentees = [
            population.event("mentee-registered", population.mentee(i, program)) for i in range(n)
        ]
        sent: dict[str, float] = {}
        canonical: set[str] = set()  # mentees whose enrolment-updated was read
        latencies: list[float] = []
        through_profiles: list[float] = []
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
        await producer.start()
        async with TopicReader(bootstrap, "match-proposed", "enrolment-updated") as reader:

            async def read() -> None:
                while len(latencies) < n:
                    assert reader.consumer is not None
                    batches = await reader.consumer.getmany(timeout_ms=100)
                    now = time.perf_counter()
                    for record in (r for rs in batches.values() for r in rs):
                        event = json.loads(record.value)
                        if event["tenantid"] != tenant:
                            continue
                        if record.topic == "enrolment-updated":
                            person = event["data"]["person_id"]
                            if person in sent and person not in canonical:
                                canonical.add(person)
                                through_profiles.append(now - sent[person])
                        elif event["data"]["mentee_id"] in sent:
                            latencies.append(now - sent.pop(event["data"]["mentee_id"]))

            reading = asyncio.create_task(read())
            t0 = time.perf_counter()
            for i, record in enumerate(mentees):
                delay = t0 + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                sent[record.data["person_id"]] = time.perf_counter()
                await producer.send(record.topic, record.value, key=record.key)
            await producer.flush()
            try:
                await asyncio.wait_for(reading, timeout=120)
            except TimeoutError:
                reading.cancel()
        await producer.stop()
        rss = {name: round(peak_rss_mb(p.process.pid), 1) for name, p in procs.items() if p.process}
    await db.close()
    return {
        "mentors": mentors,
        "rate_per_s": rate,
        "mentees": n,
        "proposals_seen": len(latencies),
        "pool_loaded_s": round(pool_loaded_s, 1),
        "latency_ms_p50": round(percentile(latencies, 0.50) * 1000, 1),
        "latency_ms_p99": round(percentile(latencies, 0.99) * 1000, 1),
        "latency_ms_max": round(max(latencies, default=float("nan")) * 1000, 1),
        # The first leg: HR event published -> profiles' enrolment-updated readable.
        "profiles_leg_ms_p50": round(percentile(through_profiles, 0.50) * 1000, 1),
        "profiles_leg_ms_p99": round(percentile(through_profiles, 0.99) * 1000, 1),
        "peak_rss_mb": rss,
    }


async def main() -> None:
    args = arguments(
        __doc__ or "",
        [
            ("--mentors", {"type": int, "default": None}),
            ("--rate", {"type": float, "default": 200.0}),
            ("--seconds", {"type": float, "default": None}),
        ],
    )
    mentors = args.mentors or (1_000 if args.quick else 10_000)
    seconds = args.seconds or (5.0 if args.quick else 30.0)
    async with real_infrastructure("bench") as infra:
        result = await measure(
            infra.bootstrap_servers, infra.database_url, mentors, args.rate, seconds
        )
    emit(
        {
            "benchmark": "matching_continuous",
            "infrastructure": infra.origin,
            **result,
            "targets": {"latency_ms_p99": 150},
            "machine": machine(),
        }
    )


if __name__ == "__main__":
    asyncio.run(main())
