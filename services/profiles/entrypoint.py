"""Composition root of profiles: runtime, pipeline, subscriber, ASGI app."""

from __future__ import annotations

from faststream import AckPolicy
from faststream.asgi import AsgiFastStream
from faststream.kafka.annotations import KafkaMessage

from services.profiles.handlers import apply_events
from shared.consumer import EventPipeline
from shared.service import Runtime, create_app
from shared.settings import ServiceSettings

NAME = "profiles"


class ProfilesSettings(ServiceSettings):
    http_port: int = 8001


TOPICS = ("mentor-registered", "mentee-registered", "person-offboarded")


def build(settings: ServiceSettings) -> AsgiFastStream:
    runtime = Runtime(NAME, settings)
    pipeline = EventPipeline(
        NAME, NAME, apply_events, runtime.registry, max_event_bytes=settings.max_event_bytes
    )

    async def open_pipeline(rt: Runtime) -> None:
        pipeline.pool = rt.pool

    runtime.on_ready.append(open_pipeline)

    @runtime.broker.subscriber(
        *TOPICS,
        group_id=settings.consumer_group or NAME,
        batch=True,
        max_records=settings.batch_max_records,
        auto_offset_reset=settings.consumer_offset_reset,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        title="profiles-ingress",
        description="HR registrations and offboardings, validated against contract v1.",
    )
    async def on_hr_events(message: KafkaMessage) -> None:
        await pipeline.handle(_records(message.raw_message))

    return create_app(runtime)


def _records(raw: object) -> tuple[object, ...]:
    return raw if isinstance(raw, tuple) else (raw,)
