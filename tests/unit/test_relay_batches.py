"""The outbox relay's fast path: records handed to Kafka in batches it fills itself, partitions
chosen as aiokafka would, headers decoded once per distinct value. Order per key must hold."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from aiokafka.partitioner import DefaultPartitioner
from prometheus_client import CollectorRegistry

from shared.runtime.db.outbox import OutboxRelay, _decode_headers, _encode_headers
from shared.runtime.kafka import by_key


def test_partitions_are_the_default_partitioners() -> None:
    default, draw = DefaultPartitioner(), random.Random(7)
    for _ in range(5000):
        key = draw.randbytes(draw.randrange(1, 40))
        partitions = list(range(draw.randrange(1, 13)))
        assert by_key(key, partitions, partitions) == default(key, partitions, partitions)


def test_headers_survive_the_outbox_and_cached_ones_are_not_shared() -> None:
    for headers in [
        (("content-type", b"application/cloudevents+json"),),
        (("content-type", b"application/cloudevents+json"), ("traceparent", b"00-ab-cd-01")),
        (*((f"dlq-{i}", bytes([i]) * 300) for i in range(5)), ("empty", None)),
    ]:
        decoded = _decode_headers(_encode_headers(headers))  # type: ignore[arg-type]
        assert decoded == list(headers)
        decoded.append(("mutated", b"x"))  # the producer gets a list of its own
        assert _decode_headers(_encode_headers(headers)) == list(headers)  # type: ignore[arg-type]


class Batch:
    """Three records at most, like a full BatchBuilder answering None."""

    def __init__(self) -> None:
        self.records: list[bytes] = []

    def append(self, *, timestamp: Any, key: bytes, value: bytes, headers: Any) -> Any:
        if len(self.records) == 3:
            return None
        self.records.append(value)
        return object()


class Producer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, int, list[bytes]]] = []  # in the order handed over

    async def partitions_for(self, topic: str) -> set[int]:
        return {0, 1, 2}

    def create_batch(self) -> Batch:
        return Batch()

    async def send_batch(self, batch: Batch, topic: str, *, partition: int) -> asyncio.Future[Any]:
        self.sent.append((topic, partition, batch.records))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


async def test_each_partition_gets_its_rows_in_id_order_once() -> None:
    producer = Producer()
    relay = OutboxRelay(None, "", "test", producer, CollectorRegistry())
    headers = _encode_headers((("content-type", b"application/cloudevents+json"),))
    rows = [
        {
            "id": i,
            "topic": "enrolment-updated" if i % 5 else "dead-letters",
            "key": f"acme:program-{i % 7}".encode(),
            "value": str(i).encode(),
            "headers": headers,
        }
        for i in range(100)
    ]
    futures = await relay._send(rows)
    assert len(futures) == len(producer.sent)
    sent = [(topic, p, int(v)) for topic, p, values in producer.sent for v in values]
    assert sorted(i for _, _, i in sent) == list(range(100))  # each row once
    for topic, partition in {(t, p) for t, p, _ in sent}:
        ids = [i for t, p, i in sent if (t, p) == (topic, partition)]
        assert ids == sorted(ids), (topic, partition)  # a partition's rows in id order
    for row in rows:  # the partition aiokafka would have chosen for its key
        (where,) = [(t, p) for t, p, i in sent if i == row["id"]]
        assert where[1] == DefaultPartitioner()(row["key"], [0, 1, 2], [0, 1, 2])
