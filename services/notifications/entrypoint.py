"""Composition root of notifications: runtime, subscription, delivery worker, ASGI app (with
the answer page people reach from their emails' links)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from faststream.asgi import AsgiFastStream

from services.notifications import repository
from services.notifications.domain import Policy
from services.notifications.handlers import Handlers, drop_invalid_responses
from services.notifications.pages import DESCRIPTION, PATH, AnswerPage
from services.notifications.settings import NotificationSettings
from services.notifications.worker import DeliveryWorker
from shared.contract.envelope import CloudEvent
from shared.runtime.http import Documented
from shared.runtime.service import Runtime, ServiceSpec, create_app
from shared.runtime.settings import ServiceSettings

NAME = "notifications"


def build(settings: ServiceSettings) -> AsgiFastStream:
    config = (
        settings
        if isinstance(settings, NotificationSettings)
        else NotificationSettings(**settings.model_dump())
    )
    runtime = Runtime(NAME, config)
    policy = Policy(
        reminder_before=timedelta(seconds=config.reminder_before_seconds),
        contact_wait=timedelta(seconds=config.contact_wait_seconds),
    )
    handlers = Handlers(policy, runtime.registry)

    def select(records: Sequence[Any], decode: Callable[[Any], CloudEvent]) -> Sequence[Any]:
        kept, dropped = drop_invalid_responses(records, decode)
        if dropped:
            handlers.ignored.labels("invalid_match_responded").inc(dropped)
        return kept

    runtime.consume(
        handlers.apply,
        description="Enrolments, match lifecycle and sessions that people must hear about.",
        select=select,
    )
    worker = DeliveryWorker(config, runtime.registry)

    async def start_worker(rt: Runtime) -> None:
        await repository.seed_tenant_channels(rt.pool, config.notifications_tenants)
        await worker.start(rt.pool, rt.dsn)

    async def stop_worker(rt: Runtime) -> None:
        await worker.stop()

    runtime.on_start(start_worker)
    runtime.on_stop(stop_worker)
    runtime.purge(repository.FINISHED_DELIVERIES)
    runtime.purge(repository.FEEDBACK_SESSIONS)
    runtime.purge(repository.ANSWERS)
    page = Documented(AnswerPage(runtime, config), ("GET", "HEAD", "POST"), DESCRIPTION)
    return create_app(runtime, routes=[(PATH, page)])


SERVICE = ServiceSpec(NAME, NotificationSettings, build, Path(__file__).parent / "migrations")
