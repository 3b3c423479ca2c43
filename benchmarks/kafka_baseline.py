"""kafka_baseline: raw aiokafka produce, consume, and consume-and-produce of small JSON messages.

Later benchmarks divide their rates by these, measured on the same broker in the same run, so
the figures say how much of the broker's raw speed mentornet keeps on a noisy shared machine.

    python -m benchmarks.kafka_baseline [--quick] [--messages N]
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from benchmarks._common import arguments, emit, machine, peak_rss_mb
from shared.local.infra import real_infrastructure

PARTITIONS = 6
PRODUCER = {"acks": "all", "enable_idempotence": True, "linger_ms": 5, "max_batch_size": 256 * 1024}
CONSUMER = {
    "max_poll_records": 2000,
    "fetch_max_bytes": 16 * 1024 * 1024,
    "auto_offset_reset": "earliest",
}


def message(i: int) -> bytes:
    """About the size of a registration event (~600 bytes)."""
    return json.dumps(
        {
            "specversion": "1.0",
            "id": uuid.uuid4().hex,
            "source": "hr/bench",
            "type": "mentor-registered",
            "time": "2026-01-01T00:00:00Z",
            "tenantid": "bench",
            "data": {
                "person_id": f"p-{i}",
                "program_id": f"program-{i % 50}",
                "display_name": "Ada Lovelace",
                "email": f"p-{i}@bench.example",
                "languages": ["en", "fr"],
                "timezone": "Europe/Paris",
                "expertise": [
                    {"topic": "public speaking", "level": 4},
                    {"topic": "python", "level": 3},
                ],
                "capacity": 2,
                "department": "engineering",
                "seniority": 7,
            },
        }
    ).encode()


async def make_topics(bootstrap: str, *names: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, PARTITIONS, 1) for n in names])
    finally:
        await admin.close()


async def produce(bootstrap: str, topic: str, n: int) -> float:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **PRODUCER)
    await producer.start()
    payloads = [message(i) for i in range(n)]
    started = time.perf_counter()
    futures = [await producer.send(topic, p, key=f"p-{i}".encode()) for i, p in enumerate(payloads)]
    await asyncio.gather(*futures)
    elapsed = time.perf_counter() - started
    await producer.stop()
    return n / elapsed


async def consume(bootstrap: str, topic: str, n: int, forward_to: str | None) -> float:
    """Read n messages as a consumer group would (commit per batch); optionally re-produce each."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=uuid.uuid4().hex,
        enable_auto_commit=False,
        **CONSUMER,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **PRODUCER) if forward_to else None
    await consumer.start()
    if producer:
        await producer.start()
    seen = 0
    started = time.perf_counter()
    while seen < n:
        batches = await consumer.getmany(timeout_ms=500, max_records=2000)
        records = [r for rs in batches.values() for r in rs]
        if producer and forward_to:
            futures = [await producer.send(forward_to, r.value, key=r.key) for r in records]
            await asyncio.gather(*futures)
        if records:
            await consumer.commit()
        seen += len(records)
    elapsed = time.perf_counter() - started
    await consumer.stop()
    if producer:
        await producer.stop()
    return n / elapsed


async def measure(bootstrap: str, n: int) -> dict[str, Any]:
    run = uuid.uuid4().hex[:8]
    source, sink = f"bench-baseline-{run}", f"bench-baseline-out-{run}"
    await make_topics(bootstrap, source, sink)
    produce_rate = await produce(bootstrap, source, n)
    consume_rate = await consume(bootstrap, source, n, None)
    consume_produce_rate = await consume(bootstrap, source, n, sink)
    return {
        "messages": n,
        "message_bytes": len(message(0)),
        "partitions": PARTITIONS,
        "producer_settings": PRODUCER,
        "produce_msgs_per_s": round(produce_rate),
        "consume_msgs_per_s": round(consume_rate),
        "consume_produce_msgs_per_s": round(consume_produce_rate),
    }


async def main() -> None:
    args = arguments(__doc__ or "", [("--messages", {"type": int, "default": None})])
    n = args.messages or (20_000 if args.quick else 200_000)
    async with real_infrastructure("bench") as infra:
        result = await measure(infra.bootstrap_servers, n)
    emit(
        {
            "benchmark": "kafka_baseline",
            "infrastructure": infra.origin,
            **result,
            "peak_rss_mb": round(peak_rss_mb(), 1),
            "machine": machine(),
        }
    )


if __name__ == "__main__":
    asyncio.run(main())
