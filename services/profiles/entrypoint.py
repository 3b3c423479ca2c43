"""Composition root of profiles: the runtime, its subscription, the ASGI app."""

from __future__ import annotations

from pathlib import Path

from faststream.asgi import AsgiFastStream

from services.profiles.handlers import apply_events
from shared.runtime.service import Runtime, ServiceSpec, create_app
from shared.runtime.settings import ServiceSettings

NAME = "profiles"


class ProfilesSettings(ServiceSettings):
    http_port: int = 8001


def build(settings: ServiceSettings) -> AsgiFastStream:
    runtime = Runtime(NAME, settings)
    runtime.consume(
        apply_events,
        description="HR registrations and offboardings, validated against contract v1.",
    )
    return create_app(runtime)


SERVICE = ServiceSpec(NAME, ProfilesSettings, build, Path(__file__).parent / "migrations")
