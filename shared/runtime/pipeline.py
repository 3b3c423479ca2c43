"""The one path every ingress record takes: decode, dead-letter, dedupe, apply, in one transaction.

For a batch of records, a single transaction
  1. skips records at or below the partition offset already applied (a replay after a crash),
  2. decodes each record against the contract; a rejected one becomes a dead letter,
  3. records events in the inbox by (tenant, source, id) and drops those seen before,
  4. lets the service apply the fresh events, which returns the records to publish,
  5. writes dead letters and published records to the outbox and stores the offsets.
Nothing is half-done: a crash anywhere before the commit redoes the whole batch, one after it
changes nothing.

Failures are of two kinds. A transient one (the database or broker unreachable, a serialization
failure, a lock timeout) raises after a back-off pause, so the subscriber rewinds and retries the
batch. Any other failure would recur on every retry and stop every partition of the batch: the
batch is split in halves, each applied in its own transaction, down to the record that fails,
which is answered on the dead-letter topic as `unprocessable` (with the error and the field when
known). The records around it are applied exactly once, in order.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg
import structlog
from prometheus_client import CollectorRegistry, Counter

from shared.contract.envelope import MAX_EVENT_BYTES, CloudEvent, Rejected, decode_record
from shared.contract.signature import MAX_AGE
from shared.runtime.db.columns import columns
from shared.runtime.db.inbox import first_seen, key_of
from shared.runtime.db.outbox import OutboxRecord, enqueue
from shared.runtime.db.pool import transaction
from shared.runtime.dead_letters import dead_letter
from shared.runtime.logging import get_logger
from shared.runtime.tracing import OpenSpans, traceparent_of
from shared.runtime.tracing import enabled as tracing_enabled

log = get_logger(__name__)


@dataclass(frozen=True)
class Incoming:
    """A valid event and the record it came in."""

    record: Any  # aiokafka ConsumerRecord
    event: CloudEvent


Apply = Callable[[asyncpg.Connection, list[Incoming]], Awaitable[list[OutboxRecord]]]

# Failures that say nothing about the records: retry the batch as it is, after a pause.
TRANSIENT: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
    asyncpg.LockNotAvailableError,
    asyncpg.QueryCanceledError,  # statement_timeout, a cancelled query
    asyncpg.InsufficientResourcesError,  # disk full, out of memory, too many connections
    asyncpg.OperatorInterventionError,  # the server shutting down or starting
    # An undefined table or column, a missing privilege: the deployment is wrong, not the
    # record (a migration not run, a role without its grants). Stall, visibly, until fixed.
    asyncpg.SyntaxOrAccessError,
)
MAX_REASON = 500  # characters of an error kept in a dead letter's reason


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
        signature_max_age: timedelta = MAX_AGE,
        transient: tuple[type[BaseException], ...] = (),
    ) -> None:
        self.signing_keys = dict(signing_keys or {})
        self.signature_max_age = signature_max_age
        self.transient = TRANSIENT + transient  # the service's own, e.g. a stale cache
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
        """Process a batch; raises (after a back-off pause) on a transient failure only."""
        assert self.pool is not None, "pipeline used before the service started"
        try:
            await self._isolating(records)
            self._failures = 0
        except self.transient as exc:
            self._failures += 1
            pause = min(0.2 * 2**self._failures, 10.0)
            log.warning("batch failed; will retry", error=repr(exc), retry_in=pause)
            await asyncio.sleep(pause)
            raise

    async def _isolating(self, records: Sequence[Any]) -> None:
        """Apply the records in one transaction; if that fails for a reason that would recur,
        apply each half in turn the same way, down to the failing record (order is kept: the
        halves run one after the other)."""
        try:
            await self._attempt(records)
            return
        except self.transient:
            raise
        except Exception as error:
            if len(records) == 1:
                await self._unprocessable(records[0], error)
                return
            log.warning(
                "batch failed on one of its records; isolating it",
                error=type(error).__name__,
                records=len(records),
            )
        half = len(records) // 2
        await self._isolating(records[:half])
        await self._isolating(records[half:])

    async def _attempt(self, records: Sequence[Any]) -> None:
        assert self.pool is not None
        try:
            async with transaction(self.pool) as conn:
                await self._process(conn, records)
        except BaseException:
            if self.on_failure:
                self.on_failure()
            raise

    async def _unprocessable(self, record: Any, error: Exception) -> None:
        """Answer a record whose effect fails on its own: a dead letter, its offset stored."""
        assert self.pool is not None
        reason = _describe(error)
        async with transaction(self.pool) as conn:
            if await _skip_applied(conn, self.schema, self.cluster, [record]):
                await enqueue(
                    conn,
                    self.schema,
                    [dead_letter(record, self.service, "unprocessable", reason)],
                )
                await _store_offsets(conn, self.cluster, [record])
        self.events.labels(record.topic, "rejected:unprocessable").inc()
        log.error(  # the class only: a database message may quote personal data
            "event unprocessable; dead-lettered",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            error=type(error).__name__,
        )

    async def _process(self, conn: asyncpg.Connection, records: Sequence[Any]) -> None:
        records = await _skip_applied(conn, self.schema, self.cluster, records)
        outgoing: list[OutboxRecord] = []
        decoded: list[Incoming] = []
        for record in records:
            try:
                event = self.decode(record)
            except Rejected as rejected:
                outgoing.append(dead_letter(record, self.service, rejected.code, rejected.reason))
                self.events.labels(record.topic, f"rejected:{rejected.code}").inc()
                log.info(
                    "event rejected", topic=record.topic, offset=record.offset, code=rejected.code
                )
                continue
            decoded.append(Incoming(record, event))

        fresh_keys = await first_seen(conn, [i.event for i in decoded])
        fresh: list[Incoming] = []
        spans = OpenSpans()
        for incoming in decoded:
            key = key_of(incoming.event)
            if key in fresh_keys:
                fresh_keys.discard(key)  # a second copy in one batch is a duplicate
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
        for topic, accepted in collections.Counter(i.record.topic for i in fresh).items():
            self.events.labels(topic, "accepted").inc(accepted)  # once per topic and batch
        await enqueue(conn, self.schema, outgoing)
        await _store_offsets(conn, self.cluster, records)

    def decode(self, record: Any) -> CloudEvent:
        """The record's event under this service's contract settings (size limit, signing keys,
        freshness window); raises Rejected."""
        return decode_record(
            record.value,
            record.headers,
            topic=record.topic,
            key=record.key,
            max_bytes=self.max_event_bytes,
            signing_keys=self.signing_keys,
            signature_max_age=self.signature_max_age,
        )

    def _traced(self, incoming: Incoming, spans: OpenSpans) -> Incoming:
        """Continue the event's trace; what it causes will carry this service's span."""
        event = incoming.event
        parent = traceparent_of(incoming.record.headers, event.traceparent)
        if not tracing_enabled():
            mine = parent  # what `spans.start` would answer, without its cost per record
        else:
            mine = spans.start(
                f"{self.service} {event.type}",
                parent,
                self.service,
                **{"messaging.kafka.topic": incoming.record.topic, "cloudevents.id": event.id},
            )
        if mine == event.traceparent:
            return incoming
        return Incoming(incoming.record, event.model_copy(update={"traceparent": mine}))


def _describe(error: Exception) -> str:
    """The error for a person fixing the publisher or the code: its class, its message, and for
    a database error the column, constraint or table it names."""
    where = [
        f"{name} {value}"
        for name in ("column", "constraint", "table")
        if (value := getattr(error, f"{name}_name", None))
    ]
    text = f"the event could not be applied: {type(error).__name__}: {error}"
    if where:
        text += f" ({', '.join(where)})"
    return text[:MAX_REASON]


def bind_event(event: CloudEvent) -> Any:
    """Bind the event and correlation ids to every log line written inside the block."""
    return structlog.contextvars.bound_contextvars(
        event_id=event.id, correlation_id=event.correlation_id, tenant=event.tenantid
    )


def consumed_lock(service: str, cluster: str, topic: str, partition: int) -> str:
    """The advisory lock of one service's offsets of a partition: services reading one topic
    (matching and notifications both read the apps' topics) never wait for each other."""
    return f"{service}:consumed:{cluster}:{topic}:{partition}"


async def _skip_applied(
    conn: asyncpg.Connection, service: str, cluster: str, records: Sequence[Any]
) -> list[Any]:
    partitions = {(r.topic, r.partition) for r in records}
    # During a rebalance the old owner of a partition may still be inside its batch when the new
    # owner reads consumed_offsets: wait for it, so its offsets are seen (sorted: no deadlock).
    # The read is a statement of its own: its snapshot must be taken after the locks are held.
    await conn.execute(
        """SELECT pg_advisory_xact_lock(hashtext(k))
           FROM (SELECT k FROM unnest($1::text[]) AS k ORDER BY k) AS sorted""",
        [consumed_lock(service, cluster, topic, partition) for topic, partition in partitions],
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
