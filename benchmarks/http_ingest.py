"""http_ingest: the ingest bulk sync posted to profiles' `POST /events`, next to the Kafka path.

The same N registrations as `ingest` (same generator and seed, another tenant) are posted as
`application/cloudevents-batch+json` requests of BATCH events, by one httpx.AsyncClient (HTTP/1.1,
keep-alive) keeping `--in-flight` requests (default 3) under way. profiles runs from the start:
the clock starts once it is ready with its consumer group assigned, at the first request, and
stops when every enrolment is stored and profiles' outbox is empty (every `enrolment-updated`
acked by Kafka): the end `ingest` waits for too. Its tenant has no rate limit
(HTTP_INGRESS_RATE=0). Each request is answered once Kafka acknowledged its events (acks=all).

In the same run, on the same infrastructure: `kafka_baseline` and the `ingest` measure itself
(registrations pre-published, profiles started, clock from its start to the same end).
`ratio_to_kafka_ingest` divides the HTTP rate by ingest's rate as ingest reports it;
`ratio_to_kafka_ingest_after_startup` by ingest's rate without its process start (clock from
the first stored enrolment), which never favours HTTP. `accepted_events_per_s` is the HTTP
acceptance rate alone: N over the time to the last 202.

    python -m benchmarks.http_ingest [--quick] [--events N] [--in-flight K]
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from typing import Any

import asyncpg
import httpx

from benchmarks._common import arguments, cpu_seconds, emit, machine
from benchmarks.ingest import (
    PROGRAMS,
    forget,
    kafka_ingest,
    population,
    profiles_env,
    wait_ingested,
)
from benchmarks.kafka_baseline import measure as kafka_baseline
from shared.local.infra import Endpoints, real_infrastructure
from shared.local.kafka import fresh_group
from shared.local.processes import ServiceProcess

BATCH = 1000  # events a request (the endpoint's maximum)
CONTENT_TYPE = "application/cloudevents-batch+json"


def batches(tenant: str, n: int) -> list[bytes]:
    """The population's events as request bodies: JSON arrays of the very bytes `ingest`
    publishes to Kafka."""
    values = [r.value or b"" for r in population(tenant, n)]
    return [b"[" + b",".join(values[i : i + BATCH]) + b"]" for i in range(0, len(values), BATCH)]


class Refused(Exception):
    """A request was not answered 202, or an event of it was rejected: the run is void."""


def client(url: str, token: str, in_flight: int) -> httpx.AsyncClient:
    """HTTP/1.1 with `in_flight` keep-alive connections (made before the clock: building its
    TLS context alone takes ~0.1 s)."""
    return httpx.AsyncClient(
        base_url=url,
        headers={"authorization": f"Bearer {token}", "content-type": CONTENT_TYPE},
        limits=httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight),
        timeout=120,
    )


async def post_all(
    client: httpx.AsyncClient, bodies: Sequence[bytes], in_flight: int
) -> dict[str, Any]:
    """Post every body, `in_flight` requests at a time; each request's latency, and when the
    last 202 came (perf_counter)."""
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    accepted = rejected = 0
    last_202 = 0.0
    queue = iter(bodies)

    async def worker() -> None:
        nonlocal accepted, rejected, last_202
        for body in queue:  # one shared iterator: each body is taken once
            sent = time.perf_counter()
            response = await client.post("/events", content=body)
            answered = time.perf_counter()
            latencies.append(answered - sent)
            statuses[response.status_code] += 1
            if response.status_code != 202:
                raise Refused(f"{response.status_code}: {response.text[:500]}")
            answer = response.json()
            accepted += answer["accepted"]
            rejected += answer["rejected"]
            if answer["rejected"]:
                raise Refused(f"rejected events: {json.dumps(answer)[:500]}")
            last_202 = max(last_202, answered)

    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return {
        "latencies": latencies,
        "statuses": statuses,
        "accepted": accepted,
        "rejected": rejected,
        "last_202": last_202,
    }


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest rank."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)] if ordered else float("nan")


async def http_ingest(infra: Endpoints, n: int, in_flight: int) -> dict[str, Any]:
    tenant = f"bench-http-{uuid.uuid4().hex[:8]}"
    token = uuid.uuid4().hex + uuid.uuid4().hex
    bodies = batches(tenant, n)
    group = await fresh_group(infra.bootstrap_servers, "profiles", "bench-http-ingest")
    env = {
        **profiles_env(infra.bootstrap_servers, infra.database_url, group),
        "HTTP_INGRESS_TOKENS": json.dumps({tenant: token}),
        "HTTP_INGRESS_RATE": "0",
    }
    proc = ServiceProcess("profiles", env)
    db = await asyncpg.connect(infra.database_url)
    proc.start()
    try:
        begun = time.perf_counter()
        await proc.wait_ready()
        await proc.wait_assigned()
        startup_s = time.perf_counter() - begun
        assert proc.process
        poster = client(proc.url, token, in_flight)
        cpu_before = cpu_seconds(proc.process.pid)
        started = time.perf_counter()
        posting = asyncio.create_task(post_all(poster, bodies, in_flight))
        waiting = asyncio.create_task(wait_ingested(db, [proc], tenant, n, started))
        try:
            posted = await posting
            run = await waiting
        finally:
            waiting.cancel()
            await poster.aclose()
    finally:
        proc.stop()
        await db.close()
        await forget(infra.database_url, tenant)
    latencies = posted["latencies"]
    return {
        "ingest_s": round(run["elapsed_s"], 2),
        "events_per_s": round(n / run["elapsed_s"]),
        "accept_s": round(posted["last_202"] - started, 2),
        "accepted_events_per_s": round(n / (posted["last_202"] - started)),
        "requests": len(latencies),
        "statuses": {str(k): v for k, v in posted["statuses"].items()},
        "accepted": posted["accepted"],
        "rejected": posted["rejected"],
        "latency_ms": {
            "p50": round(percentile(latencies, 0.5) * 1000, 1),
            "p99": round(percentile(latencies, 0.99) * 1000, 1),
            "max": round(max(latencies) * 1000, 1),
        },
        "stored": run["stored"],
        "startup_s": round(startup_s, 2),  # ready and assigned, before the clock
        "profiles_cpu_s": round(run["cpu_s"] - cpu_before, 2),  # while the clock ran
        "profiles_peak_rss_mb": round(run["peak_rss_mb"], 1),
    }


async def main() -> None:
    args = arguments(
        __doc__ or "",
        [
            ("--events", {"type": int, "default": None}),
            ("--in-flight", {"type": int, "default": 3}),  # concurrent requests
        ],
    )
    n = args.events or (10_000 if args.quick else 200_000)
    async with real_infrastructure("bench") as infra:
        baseline = await kafka_baseline(infra.bootstrap_servers, n)
        publish_s, kafka = await kafka_ingest(infra, n)
        http = await http_ingest(infra, n, args.in_flight)
    kafka_rate = n / kafka["elapsed_s"]
    after_startup = n / (kafka["elapsed_s"] - (kafka["startup_to_first_store_s"] or 0))
    emit(
        {
            "benchmark": "http_ingest",
            "infrastructure": infra.origin,
            "events": n,
            "programs": PROGRAMS,
            "batch_events": BATCH,
            "in_flight": args.in_flight,
            "http": http,
            "kafka_ingest": {
                "publish_s": round(publish_s, 2),
                "ingest_s": round(kafka["elapsed_s"], 2),
                "startup_to_first_store_s": round(kafka["startup_to_first_store_s"] or 0, 2),
                "events_per_s": round(kafka_rate),
                "events_per_s_after_startup": round(after_startup),
                "profiles_cpu_s": round(kafka["cpu_s"], 2),  # startup included
                "profiles_peak_rss_mb": round(kafka["peak_rss_mb"], 1),
            },
            "ratio_to_kafka_ingest": round(http["events_per_s"] / kafka_rate, 3),
            "ratio_to_kafka_ingest_after_startup": round(http["events_per_s"] / after_startup, 3),
            "kafka_baseline": baseline,
            "ratio_to_baseline_consume_produce": round(
                http["events_per_s"] / baseline["consume_produce_msgs_per_s"], 3
            ),
            "targets": {"ratio_to_kafka_ingest": 0.8, "rejected": 0},
            "machine": machine(),
        }
    )


if __name__ == "__main__":
    asyncio.run(main())
