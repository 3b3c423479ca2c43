"""Kafka plumbing shared by the services: client security, the FastStream broker, a raw producer.

The raw aiokafka producer is idempotent with acks=all; the outbox relay and the dead-letter writer
use it because they forward bytes and headers exactly as they are.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import ssl
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner, murmur2
from faststream.kafka import KafkaBroker
from faststream.security import BaseSecurity, SASLScram512
from prometheus_client import CollectorRegistry

from shared.runtime.settings import KafkaSettings, ServiceSettings


def ssl_context(kafka: KafkaSettings) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=kafka.ssl_cafile)
    return context


def client_options(kafka: KafkaSettings) -> dict[str, Any]:
    """aiokafka keyword arguments for the configured security (PLAINTEXT or SASL_SSL/SCRAM-512)."""
    if kafka.security_protocol == "PLAINTEXT":
        return {"bootstrap_servers": kafka.bootstrap_servers}
    return {
        "bootstrap_servers": kafka.bootstrap_servers,
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": kafka.sasl_username,
        "sasl_plain_password": kafka.sasl_password.get_secret_value()
        if kafka.sasl_password
        else None,
        "ssl_context": ssl_context(kafka),
    }


def check_production_security(settings: ServiceSettings) -> None:
    """In production, refuse to start on anything insecure the settings show (all of it at once)."""
    if settings.environment != "production":
        return
    problems = settings.production_problems()
    if problems:
        raise SystemExit("ENVIRONMENT=production requires " + "; ".join(problems))


async def tolerant_headers(message: Any, original: Any) -> Any:
    """FastStream decodes every header value as UTF-8 to build its message: one record with a
    binary or null header value would fail the whole batch before our handler, be rewound and
    fail again forever. Parse a copy with decodable headers; the pipeline still reads the
    original records (raw_message) and dead-letters them as they came."""
    try:
        return await original(message)
    except (UnicodeDecodeError, AttributeError):
        records = message if isinstance(message, tuple) else (message,)
        safe = tuple(
            dataclasses.replace(
                r,
                headers=[(k, (v or b"").decode("utf-8", "replace").encode()) for k, v in r.headers],
            )
            for r in records
        )
        parsed = await original(safe if isinstance(message, tuple) else safe[0])
        parsed.raw_message = message
        return parsed


async def keep_raw(message: Any) -> None:
    """Subscribers read the raw records themselves: FastStream must not parse hostile bytes
    (a deeply nested JSON would raise before our handler, and the record would loop forever)."""
    return None


def make_broker(
    settings: ServiceSettings, service: str, registry: CollectorRegistry
) -> KafkaBroker:
    from faststream.kafka.prometheus import KafkaPrometheusMiddleware

    kafka = settings.kafka
    security: BaseSecurity | None = None
    if kafka.security_protocol == "SASL_SSL":
        security = SASLScram512(
            username=kafka.sasl_username or "",
            password=kafka.sasl_password.get_secret_value() if kafka.sasl_password else "",
            ssl_context=ssl_context(kafka),
        )
    return KafkaBroker(
        kafka.bootstrap_servers,
        client_id=f"mentornet-{service}",
        security=security,
        graceful_timeout=settings.graceful_timeout,
        acks="all",
        enable_idempotence=True,
        allow_auto_create_topics=False,
        middlewares=[KafkaPrometheusMiddleware(registry=registry, app_name=service)],
        decoder=keep_raw,
        parser=tolerant_headers,
        logger=logging.getLogger("faststream"),
        log_level=logging.DEBUG,  # per-message lines only at DEBUG; errors still at ERROR
        description=f"mentornet {service}",
    )


_key_hash = functools.lru_cache(maxsize=16_384)(murmur2)


def by_key(key: bytes | None, all_partitions: Sequence[int], available: Sequence[int]) -> int:
    """aiokafka's default partitioner (the Java client's murmur2 of the key), with the hash
    cached: aiokafka computes it in pure Python, and a relay sends many records with few keys
    (a program's canonical events share its key)."""
    if key is None:
        return int(DefaultPartitioner()(key, all_partitions, available))
    return all_partitions[(_key_hash(key) & 0x7FFFFFFF) % len(all_partitions)]


def make_producer(kafka: KafkaSettings, service: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        **client_options(kafka),
        client_id=f"mentornet-{service}-relay",
        partitioner=by_key,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        max_batch_size=256 * 1024,
        request_timeout_ms=30000,
    )
