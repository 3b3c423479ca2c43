"""Composition root of matching: runtime, pipeline, subscriber, expiry timer, ASGI app."""

from __future__ import annotations

import asyncio
import contextlib
import functools

from faststream.asgi import AsgiFastStream

from services.matching.handlers import apply_events, expire_due
from services.matching.metrics import MatchingMetrics
from services.matching.pools import PoolCache
from shared.db.outbox import enqueue
from shared.db.pool import transaction
from shared.logging import get_logger
from shared.service import Runtime, create_app
from shared.settings import ServiceSettings

NAME = "matching"
TOPICS = (
    "enrolment-updated",
    "enrolment-ended",
    "match-responded",
    "session-completed",
    "program-configured",
    "cohort-match-requested",
)
log = get_logger(__name__)


class MatchingSettings(ServiceSettings):
    http_port: int = 8002
    expiry_interval_seconds: float = 1.0  # how often unanswered proposals are checked


# Each entrypoint names its settings class `Settings` (`mentornet schemas export` uses it).
Settings = MatchingSettings


def build(settings: ServiceSettings) -> AsgiFastStream:
    runtime = Runtime(NAME, settings)
    pools = PoolCache()
    metrics = MatchingMetrics.create(runtime.registry)
    runtime.consume(
        TOPICS,
        functools.partial(apply_events, pools=pools, metrics=metrics),
        description="Enrolments, responses, sessions and program settings.",
        on_failure=pools.forget_all,
    )
    runtime.publishes("match-proposed", "match-confirmed", "match-ended")
    interval = getattr(settings, "expiry_interval_seconds", 1.0)
    timers: list[asyncio.Task[None]] = []

    async def start_timers(rt: Runtime) -> None:
        timers.append(
            asyncio.create_task(_expire_forever(rt, pools, metrics, interval), name="expiry")
        )

    async def stop_timers() -> None:
        for task in timers:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    runtime.on_ready.append(start_timers)
    runtime.on_stop.append(stop_timers)
    return create_app(runtime)


async def _expire_forever(
    runtime: Runtime, pools: PoolCache, metrics: MatchingMetrics, interval: float
) -> None:
    """Every replica runs this; program locks make each expiry happen once."""
    while True:
        try:
            async with transaction(runtime.pool) as conn:
                await enqueue(conn, NAME, await expire_due(conn, pools, metrics))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # keep expiring after a database outage
            pools.forget_all()
            log.warning("expiry pass failed", error=repr(exc))
        await asyncio.sleep(interval)
