"""matching_continuous: latency from an HR registration being published to its proposal being
readable on `match-proposed`, through profiles and matching, with mentees arriving at a steady
rate into programs of 10,000 mentors each.

A sweep raises the arrival rate step by step (`--rates`), for one matching process, then for
two, keeping each rate's latencies, until the queue grows (p99 above 2 s, or a proposal
missing): the highest rate below the first whose p99 passed the target (150 ms) is
`max_rate_per_s`, and two replicas' over one's is `replicas_ratio`.
Then 200 mentees/s is measured three times (`runs_at_200`, the first is the sweep's own step).

Every step starts from fresh pools (a new tenant: `--programs` programs of `--mentors` mentors,
registered through profiles), so places taken at one rate never weigh on the next. The programs
are chosen so that each lands on a partition of its own, owned by a different replica when
there are two: the work splits as a deployment's programs would.

    python -m benchmarks.matching_continuous [--quick] [--mentors N] [--programs P]
        [--rates R,R,...] [--seconds S] [--replicas 1,2] [--record]
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaProducer

from benchmarks._common import (
    arguments,
    cpu_seconds,
    database_cpu_seconds,
    emit,
    machine,
    parent_pid,
    peak_rss_mb,
)
from shared.contract.topics import program_key
from shared.local.infra import real_infrastructure
from shared.local.kafka import (
    TopicReader,
    fresh_group,
    partition_of,
    partition_owners,
    publish_raw,
    wait_group_stable,
)
from shared.local.probes import wait_for
from shared.local.processes import Services
from shared.local.simulation import Population

TARGET_P99_MS = 150.0
TARGET_RATE = 400.0
TARGET_RATIO = 1.8
STEADY_RATE = 200.0  # the rate measured three times
DRAIN_S = 60.0  # how long the last proposals may take after the last arrival
SATURATED_MS = 2000.0  # a p99 this high: the queue grows during the run, higher rates are moot


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


@dataclass
class Cluster:
    """profiles and `replicas` matching processes, in consumer groups of their own."""

    bootstrap: str
    db: asyncpg.Connection
    services: Services
    matching_group: str
    replicas: int
    postmaster: int | None  # the database's main process, when it runs on this machine
    peak_rss_mb: dict[str, float] = field(default_factory=dict)

    async def programs(self, tenant: str, count: int) -> list[str]:
        """`count` program ids of `tenant`, each on a partition of its own, spread over the
        replicas (round robin) so that each replica gets its share of the arrivals."""
        owners = await partition_owners(self.bootstrap, self.matching_group)
        members = sorted({owners[tp] for tp in owners if tp[0] == "enrolment-updated"})
        chosen: list[str] = []
        taken: set[tuple[str, int]] = set()
        for i in range(1, 10_000):
            program = f"program-{i}"
            where = partition_of("enrolment-updated", program_key(tenant, program))
            wanted = members[len(chosen) % len(members)]
            if where not in taken and owners.get(where) == wanted:
                chosen.append(program)
                taken.add(where)
                if len(chosen) == count:
                    return chosen
        raise RuntimeError(f"no {count} programs spread over {members}")

    def cpu(self) -> dict[str, float]:
        """CPU seconds each service used so far, and the whole machine's busy and total time
        (/proc/stat: whether the two cores were saturated, by the broker and database too)."""
        used = {
            label: cpu_seconds(proc.process.pid)
            for label, proc in self.services.procs.items()
            if proc.process is not None
        }
        used["database"] = database_cpu_seconds(self.postmaster)
        with open("/proc/stat") as stat:
            ticks = [int(x) for x in stat.readline().split()[1:]]
        used["machine_busy"] = sum(ticks) - ticks[3] - ticks[4]  # all but idle and iowait
        used["machine_total"] = sum(ticks)
        return used

    async def batches(self) -> dict[str, tuple[float, float]]:
        """How many batches each service handled so far, and their total seconds (FastStream's
        histogram of a handler's duration, from /metrics)."""
        name = "faststream_received_processed_messages_duration_seconds"
        seen: dict[str, tuple[float, float]] = {}
        async with httpx.AsyncClient(timeout=10) as client:
            for label, proc in self.services.procs.items():
                page = (await client.get(f"{proc.url}/metrics")).text
                figures = {"count": 0.0, "sum": 0.0}
                for line in page.splitlines():
                    for kind in figures:
                        if line.startswith(f"{name}_{kind}{{"):
                            figures[kind] += float(line.rsplit(" ", 1)[1])
                seen[label] = (figures["count"], figures["sum"])
        return seen

    def note_memory(self) -> None:
        for label, proc in self.services.procs.items():
            if proc.process is not None:
                rss = peak_rss_mb(proc.process.pid)
                self.peak_rss_mb[label] = round(max(rss, self.peak_rss_mb.get(label, 0.0)), 1)


@asynccontextmanager
async def cluster(bootstrap: str, database_url: str, replicas: int) -> AsyncIterator[Cluster]:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "DATABASE_URL": database_url,
        "LOG_LEVEL": "WARNING",
    }
    # New groups pinned at the topics' ends: the services see this run's events only, whatever
    # earlier runs left on the same stack.
    groups = {s: await fresh_group(bootstrap, s, f"bench-{s}") for s in ("profiles", "matching")}
    services = Services()
    services.add("profiles", "profiles", {**env, "CONSUMER_GROUP": groups["profiles"]})
    for i in range(replicas):
        services.add(f"matching-{i + 1}", "matching", {**env, "CONSUMER_GROUP": groups["matching"]})
    db = await asyncpg.connect(database_url)
    try:
        async with services:
            await wait_group_stable(bootstrap, groups["matching"])
            postmaster = parent_pid(await db.fetchval("SELECT pg_backend_pid()"))
            yield Cluster(bootstrap, db, services, groups["matching"], replicas, postmaster)
    finally:
        await db.close()


async def step(
    c: Cluster, mentors: int, programs: int, rate: float, seconds: float
) -> dict[str, Any]:
    """One arrival rate on fresh pools: each proposal's latency from its HR event."""
    tenant = f"bench-{uuid.uuid4().hex[:8]}"
    names = await c.programs(tenant, programs)
    population = Population(tenant, programs=1, seed=13)
    pool = [
        population.event("mentor-registered", population.mentor(i, program))
        for program in names
        for i in range(mentors)
    ]
    started = time.perf_counter()
    await publish_raw(c.bootstrap, ((r.topic, r.key, r.value) for r in pool))
    await wait_for(
        c.db,
        "SELECT count(*) = $2 FROM matching.mentors WHERE tenant_id = $1",
        tenant,
        mentors * programs,
        timeout=300,
    )
    pool_loaded_s = time.perf_counter() - started

    n = int(rate * seconds)
    # Steady state: one mentee per program first, so that each replica has read its pool into
    # its cache (a replica reads a program's pool once, then only after a mentor changes).
    warm_up = [
        population.event("mentee-registered", population.mentee(n + i, program))
        for i, program in enumerate(names)
    ]
    await publish_raw(c.bootstrap, [(r.topic, r.key, r.value) for r in warm_up])
    await wait_for(
        c.db,
        "SELECT count(DISTINCT program_id) = $2 FROM matching.matches WHERE tenant_id = $1",
        tenant,
        programs,
    )
    mentees = [
        population.event("mentee-registered", population.mentee(i, names[i % programs]))
        for i in range(n)
    ]
    sent: dict[str, float] = {}
    canonical: set[str] = set()  # mentees whose enrolment-updated was read
    latencies: list[float] = []
    through_profiles: list[float] = []
    prefix = f"{tenant}:".encode()
    producer = AIOKafkaProducer(bootstrap_servers=c.bootstrap, acks="all", linger_ms=0)
    await producer.start()
    try:
        async with TopicReader(c.bootstrap, "match-proposed", "enrolment-updated") as reader:
            assert reader.consumer is not None
            consumer = reader.consumer

            async def read() -> None:
                while len(latencies) < n:
                    batches = await consumer.getmany(timeout_ms=100)
                    now = time.perf_counter()
                    for record in (r for rs in batches.values() for r in rs):
                        if record.topic == "enrolment-updated":
                            if not (record.key or b"").startswith(prefix):
                                continue
                            person = json.loads(record.value)["data"]["person_id"]
                            if person in sent and person not in canonical:
                                canonical.add(person)
                                through_profiles.append(now - sent[person])
                            continue
                        mentee = json.loads(record.value)["data"]["mentee_id"]
                        if mentee in sent:
                            latencies.append(now - sent.pop(mentee))

            reading = asyncio.create_task(read())
            cpu_before, batches_before = c.cpu(), await c.batches()
            t0 = time.perf_counter()
            for i, record in enumerate(mentees):
                delay = t0 + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                sent[record.data["person_id"]] = time.perf_counter()
                await producer.send(record.topic, record.value, key=record.key)
            await producer.flush()
            try:
                await asyncio.wait_for(reading, timeout=DRAIN_S)
            except TimeoutError:
                reading.cancel()
            cpu = {k: v - cpu_before[k] for k, v in c.cpu().items()}
            batches = {
                k: (count - batches_before[k][0], seconds - batches_before[k][1])
                for k, (count, seconds) in (await c.batches()).items()
            }
    finally:
        await producer.stop()
    c.note_memory()
    busy, total = cpu.pop("machine_busy"), cpu.pop("machine_total")
    p99 = ms(percentile(latencies, 0.99))
    return {
        "replicas": c.replicas,
        "rate_per_s": rate,
        "mentees": n,
        "proposals_seen": len(latencies),
        "pool_loaded_s": round(pool_loaded_s, 1),
        "latency_ms_p50": ms(percentile(latencies, 0.50)),
        "latency_ms_p99": p99,
        "latency_ms_max": ms(max(latencies, default=float("nan"))),
        # The first leg: HR event published -> profiles' enrolment-updated readable.
        "profiles_leg_ms_p50": ms(percentile(through_profiles, 0.50)),
        "profiles_leg_ms_p99": ms(percentile(through_profiles, 0.99)),
        # where the time goes: each service's CPU per mentee, and how busy the machine was
        "cpu_ms_per_mentee": {k: round(v * 1000 / max(n, 1), 3) for k, v in cpu.items()},
        "machine_busy_share": round(busy / max(total, 1), 2),
        # and how: transactions (batches) each service ran, with their mean duration
        "batches": {k: int(count) for k, (count, _) in batches.items()},
        "batch_ms_mean": {k: ms(t / count) if count else None for k, (count, t) in batches.items()},
        "held": len(latencies) == n and p99 <= TARGET_P99_MS,
    }


async def sweep(
    c: Cluster, rates: Sequence[float], args: Any, report: list[dict[str, Any]]
) -> float:
    """Rates in increasing order, the latency of each kept (the curve), until the queue grows
    (p99 above SATURATED_MS or a proposal missing): the highest rate below the first that did
    not hold the target (0 if the first did not)."""
    best, holding = 0.0, True
    for rate in rates:
        result = await step(c, args.mentors, args.programs, rate, args.seconds)
        report.append(result)
        print(json.dumps(result), flush=True)  # progress: a sweep takes minutes
        holding = holding and result["held"]
        best = rate if holding else best
        if result["proposals_seen"] < result["mentees"] or result["latency_ms_p99"] > SATURATED_MS:
            break
    return best


async def measure(bootstrap: str, database_url: str, args: Any) -> dict[str, Any]:
    steps: list[dict[str, Any]] = []
    max_rate: dict[int, float] = {}
    memory: dict[str, dict[str, float]] = {}
    runs_at_200: list[dict[str, Any]] = []
    for replicas in args.replicas:
        async with cluster(bootstrap, database_url, replicas) as c:
            max_rate[replicas] = await sweep(c, args.rates, args, steps)
            if replicas == 1:
                runs_at_200 = [s for s in steps if s["rate_per_s"] == STEADY_RATE][:1]
                while len(runs_at_200) < args.runs_at_200:
                    runs_at_200.append(
                        await step(c, args.mentors, args.programs, STEADY_RATE, args.seconds)
                    )
            memory[f"{replicas}_replicas"] = c.peak_rss_mb
    one, two = max_rate.get(1), max_rate.get(2)
    ratio = round(two / one, 2) if one and two is not None else None
    return {
        "mentors_per_program": args.mentors,
        "programs": args.programs,
        "seconds_per_step": args.seconds,
        "steps": steps,
        "max_rate_per_s": one,
        "max_rate_per_s_2_replicas": two,
        "replicas_ratio": ratio,
        "runs_at_200": [
            {k: r[k] for k in ("latency_ms_p50", "latency_ms_p99", "latency_ms_max", "held")}
            for r in runs_at_200
        ],
        "peak_rss_mb": memory,
        "targets": {
            "max_rate_per_s": TARGET_RATE,
            "latency_ms_p99": TARGET_P99_MS,
            "replicas_ratio": TARGET_RATIO,
        },
        "target_met": bool(
            one is not None
            and one >= TARGET_RATE
            and len(runs_at_200) >= 3
            and all(r["held"] for r in runs_at_200)
            and ratio is not None
            and ratio >= TARGET_RATIO
        ),
    }


def floats(text: str) -> list[float]:
    return sorted(float(x) for x in text.split(","))


def ints(text: str) -> list[int]:
    return sorted(int(x) for x in text.split(","))


async def main() -> None:
    args = arguments(
        __doc__ or "",
        [
            ("--mentors", {"type": int, "default": None, "help": "per program (10,000)"}),
            ("--programs", {"type": int, "default": 2}),
            ("--rates", {"type": floats, "default": None}),
            ("--seconds", {"type": float, "default": None, "help": "of arrivals per step"}),
            ("--replicas", {"type": ints, "default": [1, 2]}),
            ("--runs-at-200", {"type": int, "default": 3}),
        ],
    )
    args.mentors = args.mentors or (1_000 if args.quick else 10_000)
    args.seconds = args.seconds or (5.0 if args.quick else 20.0)
    default_rates = "100,200" if args.quick else "200,400,600,800,1000"
    args.rates = args.rates or floats(default_rates)
    if args.runs_at_200 and STEADY_RATE not in args.rates:
        args.rates = sorted({*args.rates, STEADY_RATE})
    async with real_infrastructure("bench") as infra:
        result = await measure(infra.bootstrap_servers, infra.database_url, args)
    emit(
        {
            "benchmark": "matching_continuous",
            "infrastructure": infra.origin,
            **result,
            "machine": machine(),
        }
    )


if __name__ == "__main__":
    asyncio.run(main())
