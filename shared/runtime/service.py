"""What every service is made of: a runtime (broker, pool, producer, outbox relay, background
tasks), an ASGI app with /healthz, /readyz, /metrics and the AsyncAPI page, and `serve` with
graceful shutdown. A service declares itself with a `ServiceSpec`; what it reads and publishes
comes from the contract's topic registry, so code, registry and docs cannot disagree.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import uvicorn
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from faststream import AckPolicy
from faststream.asgi import AsgiFastStream, AsgiResponse, get
from faststream.asgi.types import ASGIApp
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from shared.contract.envelope import CloudEvent
from shared.contract.events import EVENT_MODELS
from shared.contract.topics import TOPICS, published_by, read_by
from shared.runtime import heap
from shared.runtime.db.outbox import OutboxRelay
from shared.runtime.db.pool import create_pool
from shared.runtime.db.retention import INBOX, Purge
from shared.runtime.kafka import (
    check_production_security,
    client_options,
    make_broker,
    make_producer,
)
from shared.runtime.logging import configure_logging, get_logger
from shared.runtime.pipeline import Apply, EventPipeline
from shared.runtime.settings import ServiceSettings
from shared.runtime.tracing import configure_tracing

log = get_logger(__name__)

Hook = Callable[["Runtime"], Awaitable[None]]
Select = Callable[[Sequence[Any], Callable[[Any], CloudEvent]], Sequence[Any]]
Job = Callable[["Runtime"], Awaitable[None]]


@dataclass(frozen=True)
class ServiceSpec:
    """One service, as the tools that run, provision or document it see it."""

    name: str
    settings: type[ServiceSettings]
    build: Callable[[ServiceSettings], AsgiFastStream]
    migrations: Path  # the folder of its own NNN_*.sql files

    @property
    def reads(self) -> tuple[str, ...]:
        return read_by(self.name)

    @property
    def publishes(self) -> tuple[str, ...]:
        return published_by(self.name)


@dataclass(frozen=True)
class Periodic:
    """A background job run every `every` seconds while the service runs; a failing round is
    logged and the next one tries again (an outage must not end the job)."""

    name: str
    every: float
    job: Job
    first_wait: bool = False  # wait one interval before the first round


READY_TIMEOUT = 2.0  # seconds each dependency has to answer /readyz


class Check:
    """A dependency check that answers within `timeout` whatever the dependency does.

    `asyncio.wait_for` would not: it waits until the cancelled call has finished, and a query on
    a connection whose packets are dropped finishes only when the network comes back (asyncpg
    sends its cancel request over a new connection), so /readyz said nothing for the whole
    outage. Here a call still running after `timeout` is left to end on its own (its own
    timeout bounds it) and counts as a failure; until it ends, later checks wait on it rather
    than pile new calls on a dependency that does not answer."""

    def __init__(self, call: Callable[[], Awaitable[bool]], timeout: float = READY_TIMEOUT):
        self._call = call
        self._timeout = timeout
        self._running: asyncio.Task[bool] | None = None

    async def __call__(self) -> bool:
        if self._running is None or self._running.done():
            self._running = asyncio.create_task(self._answers())
        running = self._running
        done, _ = await asyncio.wait({running}, timeout=self._timeout)
        return bool(done) and not running.cancelled() and running.result()

    async def _answers(self) -> bool:
        try:
            return await self._call()
        except Exception:  # refused, reset, timed out: not ready
            return False


class Runtime:
    """The live resources of one service process; declared before start, opened on startup."""

    def __init__(self, name: str, settings: ServiceSettings) -> None:
        check_production_security(settings)
        self.name = name
        self.settings = settings
        self.registry = CollectorRegistry()
        self.broker: KafkaBroker = make_broker(settings, name, self.registry)
        self._producer: AIOKafkaProducer | None = None
        self._pool: asyncpg.Pool | None = None
        self._broker_check = Check(self._ping_broker)
        self._database_check = Check(self._ping_database)
        self.relay: OutboxRelay | None = None
        self._pipelines: list[EventPipeline] = []
        self._on_start: list[Hook] = []
        self._on_stop: list[Hook] = []
        self._purges: list[Purge] = [INBOX]  # what housekeeping deletes after RETENTION_DAYS
        self._periodic: list[Periodic] = [
            Periodic(
                "consumer-lag",
                min(5.0, settings.stall_after_seconds / 2),
                _measure_lag,
                first_wait=True,
            ),
            Periodic("housekeeping", 3600.0, _housekeeping),
        ]
        self._tasks: list[asyncio.Task[None]] = []
        self.consumer_lag = Gauge(
            "mentornet_consumer_lag",
            "Records not yet consumed",
            ["topic", "partition"],
            registry=self.registry,
        )
        self.stalled_seconds = Gauge(
            "mentornet_partition_stalled_seconds",
            "How long a partition with records waiting has not moved (0: it moves or is caught up)",
            ["topic", "partition"],
            registry=self.registry,
        )
        # (topic, partition) -> the next offset to handle, once a batch of it was handled
        self.progress: dict[tuple[str, int], int] = {}
        self._still: dict[tuple[str, int], tuple[int, float]] = {}  # -> (next offset, since)
        self.stalled: set[tuple[str, int]] = set()

    # --- what a service declares in its `build` --------------------------------------------------

    def consume(
        self,
        apply: Apply,
        *,
        description: str,
        on_failure: Callable[[], None] | None = None,
        select: Select | None = None,
        transient: tuple[type[BaseException], ...] = (),
    ) -> EventPipeline:
        """Subscribe to every topic the registry says this service reads, the way every service
        does: batches in one consumer group, acknowledged only after their transaction committed
        (NACK rewinds on a transient failure), through the one pipeline (contract, dead letters,
        inbox, outbox). `select` may drop records first (it is given the records and the
        pipeline's own `decode`); `transient` names the service's own
        errors worth a retry of the batch as it is (see pipeline.py)."""
        settings = self.settings
        pipeline = EventPipeline(
            self.name,
            self.name,
            apply,
            self.registry,
            max_event_bytes=settings.max_event_bytes,
            on_failure=on_failure,
            signing_keys={
                t: k.get_secret_value().encode() for t, k in settings.ingress_signing_keys.items()
            },
            signature_max_age=timedelta(hours=settings.signature_max_age_hours),
            transient=transient,
        )
        self._pipelines.append(pipeline)

        @self.broker.subscriber(
            *read_by(self.name),
            group_id=settings.consumer_group or self.name,
            batch=True,
            max_records=settings.batch_max_records,
            batch_timeout_ms=20,
            fetch_max_wait_ms=settings.fetch_max_wait_ms,
            auto_offset_reset=settings.consumer_offset_reset,
            ack_policy=AckPolicy.NACK_ON_ERROR,
            title=f"{self.name}-input",
            description=description,
        )
        async def on_records(message: KafkaMessage) -> None:
            raw = message.raw_message
            records: Sequence[Any] = raw if isinstance(raw, tuple) else (raw,)
            handled = records
            if select is not None:
                records = select(records, pipeline.decode)
            if records:
                await pipeline.handle(records)
            for record in handled:  # for the stall check: this partition moved
                tp = (record.topic, record.partition)
                self.progress[tp] = max(self.progress.get(tp, 0), record.offset + 1)

        for topic in published_by(self.name):  # its AsyncAPI page shows each with its schema
            if topic in EVENT_MODELS:
                self.broker.publisher(
                    topic,
                    schema=EVENT_MODELS[topic],
                    description=TOPICS[topic].description,
                    title=f"{self.name}:{topic}",
                )
        return pipeline

    def every(self, name: str, seconds: float, job: Job) -> None:
        """Run `job` every `seconds` from startup to shutdown (every replica runs it)."""
        self._periodic.append(Periodic(name, seconds, job))

    def on_start(self, hook: Hook) -> None:
        """Run `hook` at startup, once the database, producer and pipelines are open."""
        self._on_start.append(hook)

    def on_stop(self, hook: Hook) -> None:
        """Run `hook` at shutdown, after the broker drained and background jobs stopped."""
        self._on_stop.append(hook)

    def purge(self, purge: Purge) -> None:
        """Have housekeeping delete this table's rows older than RETENTION_DAYS too."""
        self._purges.append(purge)

    # --- what it holds once started ------------------------------------------------------------

    @property
    def pool(self) -> asyncpg.Pool:
        assert self._pool is not None, f"{self.name} used its database before startup"
        return self._pool

    @property
    def producer(self) -> AIOKafkaProducer:
        assert self._producer is not None, f"{self.name} used its producer before startup"
        return self._producer

    @property
    def dsn(self) -> str:
        return self.settings.database_url.get_secret_value()

    async def cluster_id(self) -> str:
        """The Kafka cluster's id (offsets are only comparable within one cluster)."""
        admin = AIOKafkaAdminClient(
            **client_options(self.settings.kafka), client_id=f"mentornet-{self.name}"
        )
        await admin.start()
        try:
            return str((await admin.describe_cluster())["cluster_id"])
        finally:
            await admin.close()

    async def start(self) -> None:
        """Open the database and the producer, start the relay, open the pipelines, run the
        start hooks and the background jobs; the broker starts after this."""
        self._pool = await create_pool(
            self.dsn, self.name, max_size=self.settings.database_pool_size
        )
        self._producer = make_producer(self.settings.kafka, self.name)  # needs the running loop
        await self._producer.start()
        self.relay = OutboxRelay(self._pool, self.dsn, self.name, self.producer, self.registry)
        self.relay.start()
        cluster = await self.cluster_id() if self._pipelines else ""
        for pipeline in self._pipelines:
            pipeline.open(self._pool, cluster)
        for hook in self._on_start:
            await hook(self)
        self._tasks = [
            asyncio.create_task(self._run(periodic), name=periodic.name)
            for periodic in self._periodic
        ]
        log.info("service started", http_port=self.settings.http_port)

    async def _run(self, periodic: Periodic) -> None:
        if periodic.first_wait:
            await asyncio.sleep(periodic.every)
        while True:
            try:
                await periodic.job(self)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # an outage: the next round catches up
                log.warning(f"{periodic.name} failed", error=repr(exc))
            await asyncio.sleep(periodic.every)

    async def housekeep(self, now: datetime | None = None) -> dict[str, int]:
        """Purge what is older than RETENTION_DAYS; returns the rows deleted per table."""
        before = (now or datetime.now(UTC)) - timedelta(days=self.settings.retention_days)
        return {purge.table: await purge.run(self.pool, before) for purge in self._purges}

    async def stop(self) -> None:
        """Runs after the broker has drained in-flight messages."""
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for hook in self._on_stop:
            await hook(self)
        if self.relay:
            await self.relay.stop()
        if self._producer:
            await self._producer.stop()
        if self._pool:
            await self._pool.close()
        log.info("service stopped")

    async def ready(self) -> dict[str, bool]:
        """Whether the broker and the database answer now, each within two seconds."""
        broker, database = await asyncio.gather(self._broker_check(), self._database_check())
        return {"broker": broker, "database": database}

    async def _ping_broker(self) -> bool:
        return bool(await self.broker.ping(timeout=READY_TIMEOUT))

    async def _ping_database(self) -> bool:
        if self._pool is None:
            return False
        return bool(await self._pool.fetchval("SELECT true"))  # bounded by command_timeout


async def _housekeeping(runtime: Runtime) -> None:
    purged = await runtime.housekeep()
    if any(purged.values()):
        log.info("old rows purged", **purged)


async def _measure_lag(runtime: Runtime) -> None:
    """Consumer lag per partition (highwater minus position), for /metrics and autoscaling, and
    the partitions that have records waiting but have not moved for STALL_AFTER_SECONDS."""
    now = time.monotonic()
    assigned: set[tuple[str, int]] = set()
    for subscriber in runtime.broker.subscribers:
        consumer = getattr(subscriber, "consumer", None)
        if consumer is None:
            continue
        with contextlib.suppress(Exception):  # a rebalance may be under way
            for tp in consumer.assignment():
                highwater = consumer.highwater(tp)
                if highwater is None:
                    continue
                position = await consumer.position(tp)
                runtime.consumer_lag.labels(tp.topic, str(tp.partition)).set(highwater - position)
                key = (tp.topic, tp.partition)
                assigned.add(key)
                done = runtime.progress.get(key)
                if done is None:  # nothing handled here since startup: what the group committed
                    done = await consumer.committed(tp) or 0
                _note_progress(runtime, key, done, highwater, now)
    for key in set(runtime._still) - assigned:  # partitions given to another replica
        del runtime._still[key]
        runtime.stalled.discard(key)
        with contextlib.suppress(KeyError):
            runtime.stalled_seconds.remove(key[0], str(key[1]))


def _note_progress(
    runtime: Runtime, key: tuple[str, int], done: int, highwater: int, now: float
) -> None:
    """A partition stalls when records wait past `done` and `done` has not moved for a while."""
    before = runtime._still.get(key)
    if highwater <= done or before is None or before[0] != done:
        runtime._still[key] = (done, now)
    still_for = now - runtime._still[key][1] if highwater > done else 0.0
    runtime.stalled_seconds.labels(key[0], str(key[1])).set(still_for)
    if still_for > runtime.settings.stall_after_seconds:
        if key not in runtime.stalled:
            log.error("partition stalled", topic=key[0], partition=key[1], seconds=still_for)
        runtime.stalled.add(key)
    else:
        runtime.stalled.discard(key)


def create_app(runtime: Runtime, routes: Sequence[tuple[str, ASGIApp]] = ()) -> AsgiFastStream:
    """The service's ASGI app: health, readiness, metrics and AsyncAPI, plus `routes` of its own
    (FastStream routes by exact path, e.g. `("/answer", page)`)."""

    @get(include_in_schema=False)
    async def healthz(scope: Any) -> AsgiResponse:
        return AsgiResponse(
            b'{"status":"alive"}', 200, headers={"content-type": "application/json"}
        )

    @get(include_in_schema=False)
    async def readyz(scope: Any) -> AsgiResponse:
        checks: dict[str, Any] = dict(await runtime.ready())
        checks["consuming"] = not runtime.stalled
        ok = all(checks.values())
        if runtime.stalled:
            checks["stalled"] = sorted(
                f"{topic}:{partition}" for topic, partition in runtime.stalled
            )
        return AsgiResponse(
            json.dumps(checks).encode(),
            200 if ok else 503,
            headers={"content-type": "application/json"},
        )

    @get(include_in_schema=False)
    async def metrics(scope: Any) -> AsgiResponse:
        return AsgiResponse(
            generate_latest(runtime.registry), 200, headers={"content-type": CONTENT_TYPE_LATEST}
        )

    return AsgiFastStream(
        runtime.broker,
        asgi_routes=[("/healthz", healthz), ("/readyz", readyz), ("/metrics", metrics), *routes],
        asyncapi_path="/docs/asyncapi",
        on_startup=[runtime.start],
        after_shutdown=[runtime.stop],
        logger=None,
    )


def serve(service: ServiceSpec, settings: ServiceSettings | None = None) -> None:
    """Run one service until SIGTERM/SIGINT; uvicorn's lifespan drains the broker first."""
    settings = settings or service.settings()
    configure_logging(service.name, settings.log_level, settings.log_format)
    configure_tracing(service.name, settings.traces_file)
    heap.tune_for_batches()
    app = service.build(settings)
    uvicorn.run(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=int(settings.graceful_timeout),
    )
