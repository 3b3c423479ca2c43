"""Settings shared by every service, read from environment variables with local defaults.

Every variable is documented in the README; the defaults match `mentornet stack up`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class KafkaSettings(BaseSettings):
    """How to reach the Kafka cluster."""

    model_config = SettingsConfigDict(env_prefix="KAFKA_", extra="ignore")

    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: str = "PLAINTEXT"  # PLAINTEXT or SASL_SSL
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: str | None = None


class ServiceSettings(BaseSettings):
    """What every service needs: broker, database, HTTP port for probes and metrics, logging."""

    model_config = SettingsConfigDict(extra="ignore")

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    database_url: SecretStr = SecretStr("postgresql://mentornet:mentornet@127.0.0.1:5433/mentornet")
    database_pool_size: int = 5
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    log_level: str = "INFO"
    log_format: str = "json"  # json or console
    graceful_timeout: float = 15.0
    max_event_bytes: int = 256 * 1024  # larger ingress records are dead-lettered
    batch_max_records: int = 1000  # records handled per transaction
    # How long the broker may hold a fetch with nothing new. aiokafka leaves a partition whose
    # records are still being handled out of the next fetch, and refetches it only once that
    # fetch returns: its default of 500 ms idled matching for ~400 ms between batches.
    fetch_max_wait_ms: int = 20
    # Inbox rows (and finished deliveries) older than this are purged, hourly. Keep it above the
    # topics' retention (30 days): an event still in a topic can be replayed and must be known.
    retention_days: float = 45.0
    ingress_signing_keys: dict[str, SecretStr] = Field(default_factory=dict)  # tenant -> HMAC key
    consumer_group: str | None = None  # default: the service name
    consumer_offset_reset: Literal["earliest", "latest"] = "earliest"  # where a new group starts
    traces_file: str | None = None  # write OpenTelemetry spans here as JSON lines
    environment: str = "local"  # "production" refuses to start without TLS and authentication
