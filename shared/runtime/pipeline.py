"""The one path every ingress record takes: decode, dead-letter, dedupe, apply, in one transaction.

For a batch of records, a single transaction
  1. skips records at or below the partition offset already applied (a replay after a crash),
  2. decodes each record against the contract; a rejected one becomes a dead letter,
  3. records event ids in the inbox and drops those seen before (republished duplicates),
  4. lets the service apply the fresh events, which returns the records to publish,
  5. writes dead letters and published records to the outbox and stores the offsets.
Nothing is half-done: a crash anywhere before the commit redoes the whole batch, one after it
changes nothing. A database or broker outage raises, so the subscriber rewinds and retries.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import structlog
from prometheus_client import CollectorRegistry, Counter

from shared.contract.envelope import MAX_EVENT_BYTES, CloudEvent, Rejected, decode_record
from shared.runtime.db.columns import columns
from shared.runtime.db.inbox import first_seen
from shared.runtime.db.outbox import OutboxRecord, enqueue
from shared.runtime.db.pool import transaction
from shared.runtime.dead_letters import dead_letter
from shared.runtime.logging import get_logger
from shared.runtime.tracing import OpenSpans, traceparent_of

log = get_logger(__name__)


@dataclass(frozen=True)
class Incoming:
    """A valid event and the record it came in."""

    record: Any  # aiokafka ConsumerRecord
    event: CloudEvent


Apply = Callable[[asyncpg.Connection, list[Incoming]], Awaitable[list[OutboxRecord]]]


class EventPipeline:
    def __init__(
        self,
        service: str,
        schema: str,
        apply: Apply,
        registry: CollectorRegistry,
        max_event_bytes: int = MAX_EVENT_BYTES,
        on_failure: Callable[[], None] | None = None,
        signing_keys: Mapping[str, bytes] | None = None,
    ) -> None:
        self.signing_keys = dict(signing_keys or {})
        self.service = service
        self.on_failure = on_failure  # e.g. drop caches that the rolled-back work updated
        self.schema = schema
        self.apply = apply
        self.max_event_bytes = max_event_bytes
        self.pool: asyncpg.Pool | None = None
        self.cluster = ""  # the Kafka cluster's id, set at startup: offsets are per cluster
        self._failures = 0
        self.events = Counter(
            "mentornet_events",
            "Ingress records by outcome",
            ["topic", "outcome"],
            registry=registry,
        )

    def open(self, pool: asyncpg.Pool, cluster: str) -> None:
        """At startup: the database to work in and the Kafka cluster's id."""
        self.pool, self.cluster = pool, cluster

    async def handle(self, records: Sequence[Any]) -> None:
        """Process a batch; raises (after a backoff pause) when the database is unreachable."""
        assert self.pool is not None, "pipeline used before the service started"
        try:
            await self._handle(records)
        except BaseException:
            if self.on_failure:
                self.on_failure()
            raise

    async def _handle(self, records: Sequence[Any]) -> None:
        assert self.pool is not None
        try:
            async with transaction(self.pool) as conn:
                await self._process(conn, records)
            self._failures = 0
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            self._failures += 1
            pause = min(0.2 * 2**self._failures, 10.0)
            log.warning("batch failed; will retry", error=repr(exc), retry_in=pause)
            await asyncio.sleep(pause)
            raise
        except Exception:
            log.exception("batch failed on an unexpected error; will retry")
            await asyncio.sleep(1.0)
            raise

    async def _process(self, conn: asyncpg.Connection, records: Sequence[Any]) -> None:
        records = await _skip_applied(conn, self.cluster, records)
        outgoing: list[OutboxRecord] = []
        decoded: list[Incoming] = []
        for record in records:
            try:
                event = decode_record(
                    record.value,
                    record.headers,
                    topic=record.topic,
                    key=record.key,
                    max_bytes=self.max_event_bytes,
                    signing_keys=self.signing_keys,
                )
            except Rejected as rejected:
                outgoing.append(dead_letter(record, self.service, rejected.code, rejected.reason))
                self.events.labels(record.topic, f"rejected:{rejected.code}").inc()
                log.info(
                    "event rejected", topic=record.topic, offset=record.offset, code=rejected.code
                )
                continue
            decoded.append(Incoming(record, event))

        fresh_ids = await first_seen(conn, [i.event for i in decoded])
        fresh: list[Incoming] = []
        spans = OpenSpans()
        for incoming in decoded:
            if incoming.event.id in fresh_ids:
                fresh_ids.discard(incoming.event.id)  # a second copy in one batch is a duplicate
                fresh.append(self._traced(incoming, spans))
            else:
                self.events.labels(incoming.record.topic, "duplicate").inc()
        try:
            if fresh:
                outgoing += await self.apply(conn, fresh)
        except BaseException as error:
            spans.end(error)
            raise
        spans.end()
        for incoming in fresh:
            self.events.labels(incoming.record.topic, "accepted").inc()
        await enqueue(conn, self.schema, outgoing)
        await _store_offsets(conn, self.cluster, records)

    def _traced(self, incoming: Incoming, spans: OpenSpans) -> Incoming:
        """Continue the event's trace; what it causes will carry this service's span."""
        event = incoming.event
        parent = traceparent_of(incoming.record.headers, event.traceparent)
        mine = spans.start(
            f"{self.service} {event.type}",
            parent,
            self.service,
            **{"messaging.kafka.topic": incoming.record.topic, "cloudevents.id": event.id},
        )
        if mine == event.traceparent:
            return incoming
        return Incoming(incoming.record, event.model_copy(update={"traceparent": mine}))


def bind_event(event: CloudEvent) -> Any:
    """Bind the event and correlation ids to every log line written inside the block."""
    return structlog.contextvars.bound_contextvars(
        event_id=event.id, correlation_id=event.correlation_id, tenant=event.tenantid
    )


async def _skip_applied(
    conn: asyncpg.Connection, cluster: str, records: Sequence[Any]
) -> list[Any]:
    partitions = {(r.topic, r.partition) for r in records}
    # During a rebalance the old owner of a partition may still be inside its batch when the new
    # owner reads consumed_offsets: wait for it, so its offsets are seen (sorted: no deadlock).
    # The read is a statement of its own: its snapshot must be taken after the locks are held.
    await conn.execute(
        """SELECT pg_advisory_xact_lock(hashtext(k))
           FROM (SELECT k FROM unnest($1::text[]) AS k ORDER BY k) AS sorted""",
        [f"consumed:{cluster}:{topic}:{partition}" for topic, partition in partitions],
    )
    rows = await conn.fetch(
        """SELECT topic, partition, "offset" FROM consumed_offsets
           WHERE cluster = $1 AND (topic, partition) IN (SELECT * FROM unnest($2::text[], $3::int[]))""",
        cluster,
        *columns(partitions, 2),
    )
    applied = {(r["topic"], r["partition"]): r["offset"] for r in rows}
    return [r for r in records if r.offset > applied.get((r.topic, r.partition), -1)]


async def _store_offsets(conn: asyncpg.Connection, cluster: str, records: Sequence[Any]) -> None:
    latest: dict[tuple[str, int], int] = {}
    for r in records:
        latest[(r.topic, r.partition)] = max(r.offset, latest.get((r.topic, r.partition), -1))
    if latest:
        await conn.execute(
            """INSERT INTO consumed_offsets (cluster, topic, partition, "offset")
               SELECT $1, * FROM unnest($2::text[], $3::int[], $4::bigint[])
               ON CONFLICT (cluster, topic, partition)
               DO UPDATE SET "offset" = GREATEST(consumed_offsets."offset", EXCLUDED."offset")""",
            cluster,
            *columns(((t, p, offset) for (t, p), offset in latest.items()), 3),
        )
