"""Composition root of matching: runtime, pipeline, expiry job, ASGI app."""

from __future__ import annotations

import functools
from pathlib import Path

from faststream.asgi import AsgiFastStream

from services.matching.handlers import apply_events, expire_proposals
from services.matching.metrics import MatchingMetrics
from services.matching.pools import PoolCache
from shared.runtime.service import Runtime, ServiceSpec, create_app
from shared.runtime.settings import ServiceSettings

NAME = "matching"


class MatchingSettings(ServiceSettings):
    http_port: int = 8002
    expiry_interval_seconds: float = 1.0  # how often unanswered proposals are checked


def build(settings: ServiceSettings) -> AsgiFastStream:
    runtime = Runtime(NAME, settings)
    pools = PoolCache()
    metrics = MatchingMetrics.create(runtime.registry)
    runtime.consume(
        functools.partial(apply_events, pools=pools, metrics=metrics),
        description="Enrolments, responses, sessions and program settings.",
        on_failure=pools.forget_all,
    )
    runtime.every(
        "expiry",
        getattr(settings, "expiry_interval_seconds", 1.0),
        functools.partial(expire_proposals, pools=pools, metrics=metrics),
    )
    return create_app(runtime)


SERVICE = ServiceSpec(NAME, MatchingSettings, build, Path(__file__).parent / "migrations")
