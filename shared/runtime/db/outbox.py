"""Transactional outbox: records are written with the state change, then relayed to Kafka.

The relay wakes on LISTEN/NOTIFY (and polls once a second as a safety net), publishes a batch with
the idempotent producer, waits for every ack, then deletes the batch. A crash between publish and
delete republishes the same events with the same ids, which consumers drop in their inbox. One
relay per schema at a time holds an advisory lock, so a key's records leave in write order.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.producer.message_accumulator import BatchBuilder
from prometheus_client import CollectorRegistry, Gauge

from shared.contract.envelope import CloudEvent
from shared.runtime.db.columns import columns
from shared.runtime.kafka import by_key
from shared.runtime.logging import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class OutboxRecord:
    """A Kafka record to publish once the transaction that wrote it commits."""

    topic: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()

    @classmethod
    def of_event(cls, topic: str, key: str, event: CloudEvent) -> OutboxRecord:
        """A structured-mode record, as the CloudEvents Kafka binding writes it."""
        return cls(topic, key.encode(), event.to_bytes(), event.kafka_headers())


async def enqueue(conn: asyncpg.Connection, schema: str, records: Sequence[OutboxRecord]) -> None:
    """Write records to the outbox inside the caller's transaction; NOTIFY fires on commit.
    Ids follow the records' order, and the relay publishes by id."""
    if not records:
        return
    rows = [(r.topic, r.key, r.value, _encode_headers(r.headers)) for r in records]
    if len(rows) >= COPY_FROM:  # a bulk sync: COPY is the fastest way in
        await conn.copy_records_to_table(
            "outbox", schema_name=schema, columns=["topic", "key", "value", "headers"], records=rows
        )
        await conn.execute(f"NOTIFY {schema}_outbox")
        return
    await conn.execute(  # a few records: one round trip for the rows and the NOTIFY
        f"""WITH queued AS (
                INSERT INTO "{schema}".outbox (topic, key, value, headers)
                SELECT * FROM unnest($1::text[], $2::bytea[], $3::bytea[], $4::bytea[])
            )
            SELECT pg_notify($5, '')""",
        *columns(rows, 4),
        f"{schema}_outbox",
    )


COPY_FROM = 100  # records


def _encode_headers(headers: Sequence[tuple[str, bytes]]) -> bytes:
    if type(headers) is tuple and len(headers) <= 2:  # a canonical event's: cached
        return _encode_few(headers)
    return _to_json(headers)


def _decode_headers(raw: bytes) -> list[tuple[str, bytes | None]]:
    if len(raw) <= 256:  # a canonical event's: cached (a dead letter's are larger, and unique)
        return list(_decode_few(raw))  # a list of its own: aiokafka's record builder wants one
    return _from_json(raw)


# Most records carry the same content type (and one trace's records the same traceparent):
# JSON and base64 once for them, not once per record on the way in and again on the way out.
@functools.lru_cache(maxsize=1024)
def _encode_few(headers: tuple[tuple[str, bytes], ...]) -> bytes:
    return _to_json(headers)


@functools.lru_cache(maxsize=1024)
def _decode_few(raw: bytes) -> tuple[tuple[str, bytes | None], ...]:
    return tuple(_from_json(raw))


def _to_json(headers: Sequence[tuple[str, bytes]]) -> bytes:
    return json.dumps(
        [[k, None if v is None else base64.b64encode(v).decode()] for k, v in headers]
    ).encode()


def _from_json(raw: bytes) -> list[tuple[str, bytes | None]]:
    return [(k, None if v is None else base64.b64decode(v)) for k, v in json.loads(raw)]


class OutboxRelay:
    def __init__(
        self,
        pool: asyncpg.Pool,
        dsn: str,
        schema: str,
        producer: AIOKafkaProducer,
        registry: CollectorRegistry,
        batch_size: int = 2000,
    ) -> None:
        self.pool = pool
        self.dsn = dsn
        self.schema = schema
        self.producer = producer
        self.batch_size = batch_size
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.backlog = Gauge(
            "mentornet_outbox_backlog", "Records waiting in the outbox", registry=registry
        )

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"{self.schema}-outbox-relay")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        delay = 0.5
        listener: asyncpg.Connection | None = None
        try:
            while True:
                try:
                    if listener is None or listener.is_closed():
                        listener = await asyncpg.connect(self.dsn)
                        await listener.add_listener(f"{self.schema}_outbox", self._on_notify)
                    self._wake.clear()  # before reading: a NOTIFY during the read wakes the next round
                    sent = await self.relay_once()
                    delay = 0.5
                    if sent < self.batch_size:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._wake.wait(), timeout=1.0)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # the relay must outlive any outage and resume by itself
                    log.warning("outbox relay failed; retrying", error=repr(exc), retry_in=delay)
                    listener = None
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 10.0)
        finally:
            if listener is not None and not listener.is_closed():
                listener.terminate()

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    async def _send(self, rows: Sequence[asyncpg.Record]) -> list[asyncio.Future[Any]]:
        """Hand the rows to the producer in id order, a partition's rows in batches filled here
        (aiokafka sends a partition's batches in the order given, so order per key holds): one
        future per batch, not one per record, which cost the relay more than its SQL."""
        producer, futures = self.producer, []
        partitions: dict[str, list[int]] = {}
        filling: dict[tuple[str, int], BatchBuilder] = {}
        for r in rows:
            topic, key, value = r["topic"], r["key"], r["value"]
            headers = _decode_headers(r["headers"])
            if topic not in partitions:
                partitions[topic] = sorted(await producer.partitions_for(topic))
            partition = by_key(key, partitions[topic], partitions[topic])
            batch = filling.get((topic, partition))
            if batch is not None:
                if batch.append(timestamp=None, key=key, value=value, headers=headers) is not None:
                    continue
                # full: it leaves before the next batch of its partition
                futures.append(await producer.send_batch(batch, topic, partition=partition))
            batch = filling[(topic, partition)] = producer.create_batch()
            batch.append(timestamp=None, key=key, value=value, headers=headers)  # a first fits
        for (topic, partition), batch in filling.items():
            futures.append(await producer.send_batch(batch, topic, partition=partition))
        return futures

    async def relay_once(self) -> int:
        """Publish one batch; returns how many records left the outbox."""
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(  # nothing, unless this relay holds the schema's lock
                # (an uncorrelated subquery: evaluated once, before the index scan by id)
                """SELECT id, topic, key, value, headers FROM outbox
                   WHERE (SELECT pg_try_advisory_xact_lock(hashtext($1))) ORDER BY id LIMIT $2""",
                f"outbox:{self.schema}",
                self.batch_size,
            )
            if rows:
                await asyncio.gather(*await self._send(rows))
                ids = [r["id"] for r in rows]
                if len(rows) == self.batch_size:  # more to come: no count until it is drained
                    await conn.execute("DELETE FROM outbox WHERE id = ANY($1::bigint[])", ids)
                else:  # the count runs on the statement's snapshot, from before the delete
                    before = await conn.fetchval(
                        """WITH sent AS (DELETE FROM outbox WHERE id = ANY($1::bigint[]))
                           SELECT count(*) FROM outbox""",
                        ids,
                    )
                    self.backlog.set(before - len(rows))
            return len(rows)
