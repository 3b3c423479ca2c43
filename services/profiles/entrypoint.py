"""Composition root of profiles: the runtime, its subscription, the ASGI app."""

from __future__ import annotations

from faststream.asgi import AsgiFastStream

from services.profiles.handlers import apply_events
from shared.service import Runtime, create_app
from shared.settings import ServiceSettings

NAME = "profiles"
TOPICS = ("mentor-registered", "mentee-registered", "person-offboarded")


class ProfilesSettings(ServiceSettings):
    http_port: int = 8001


# Each entrypoint names its settings class `Settings` (`mentornet schemas export` uses it).
Settings = ProfilesSettings


def build(settings: ServiceSettings) -> AsgiFastStream:
    runtime = Runtime(NAME, settings)
    runtime.consume(
        TOPICS,
        apply_events,
        description="HR registrations and offboardings, validated against contract v1.",
    )
    runtime.publishes("enrolment-updated", "enrolment-ended")
    return create_app(runtime)
