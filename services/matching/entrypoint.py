"""Composition root of matching: runtime, pipeline, expiry, relationship and learning jobs, flow
process, ASGI app."""

from __future__ import annotations

import functools
from pathlib import Path

from faststream.asgi import AsgiFastStream

from services.matching.flows import FlowProcess
from services.matching.handlers import (
    Replica,
    apply_events,
    expire_proposals,
    follow_relationships,
    learn_weights,
)
from services.matching.metrics import MatchingMetrics
from services.matching.pools import PoolCache
from services.matching.repository import StalePool
from shared.runtime.service import Runtime, ServiceSpec, create_app
from shared.runtime.settings import ServiceSettings

NAME = "matching"


class MatchingSettings(ServiceSettings):
    http_port: int = 8002
    expiry_interval_seconds: float = 1.0  # how often unanswered proposals are checked
    relationship_interval_seconds: float = 1.0  # how often check-ins, stalls and ends are checked
    learning_interval_seconds: float = 30.0  # how often programs' outcomes are looked at (learning)


def build(settings: ServiceSettings) -> AsgiFastStream:
    runtime = Runtime(NAME, settings)
    replica = Replica(PoolCache(), MatchingMetrics.create(runtime.registry), FlowProcess())
    runtime.consume(
        functools.partial(apply_events, replica=replica),
        description="Enrolments, responses, sessions and program settings.",
        on_failure=replica.pools.forget_all,
        transient=(StalePool,),  # a pool out of date: retried as it is, on fresh pools
    )
    runtime.every(
        "expiry",
        getattr(settings, "expiry_interval_seconds", 1.0),
        functools.partial(expire_proposals, replica=replica),
    )
    runtime.every(
        "relationships",
        getattr(settings, "relationship_interval_seconds", 1.0),
        functools.partial(follow_relationships, replica=replica),
    )
    runtime.every(
        "learning",
        getattr(settings, "learning_interval_seconds", 30.0),
        functools.partial(learn_weights, replica=replica),
    )

    async def stop_flows(_: Runtime) -> None:
        replica.flows.close()

    runtime.on_stop(stop_flows)
    return create_app(runtime)


SERVICE = ServiceSpec(NAME, MatchingSettings, build, Path(__file__).parent / "migrations")
