"""Composition root of profiles: the runtime, its subscription, the ASGI app with POST /events."""

from __future__ import annotations

from pathlib import Path

from faststream.asgi import AsgiFastStream

from services.profiles.handlers import apply_events
from services.profiles.ingress import DESCRIPTION, PATH, EventsEndpoint
from services.profiles.settings import ProfilesSettings
from shared.runtime.db.retention import Purge
from shared.runtime.http import Documented
from shared.runtime.service import Runtime, ServiceSpec, create_app
from shared.runtime.settings import ServiceSettings

NAME = "profiles"


def build(settings: ServiceSettings) -> AsgiFastStream:
    config = (
        settings
        if isinstance(settings, ProfilesSettings)
        else ProfilesSettings(**settings.model_dump())
    )
    runtime = Runtime(NAME, config)
    runtime.consume(
        apply_events,
        description="HR registrations and offboardings, validated against contract v1.",
    )
    runtime.purge(Purge("http_ingress", "accepted_at"))
    events = Documented(EventsEndpoint(runtime, config), ("POST",), DESCRIPTION)
    return create_app(runtime, routes=[(PATH, events)])


SERVICE = ServiceSpec(NAME, ProfilesSettings, build, Path(__file__).parent / "migrations")
