"""Settings shared by every service, read from environment variables with local defaults.

Every variable is documented in the README; the defaults match `mentornet stack up`.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import parse_qs, urlsplit

from pydantic import Field, SecretStr, model_validator
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
    # A signed event whose `time` is older than this is refused (stale_signature): a replay. It
    # must stay below RETENTION_DAYS, or a replay after the inbox purge would be applied again.
    signature_max_age_hours: float = Field(default=7 * 24.0, gt=0)
    # A partition with records waiting that has not moved for this long makes /readyz answer 503.
    stall_after_seconds: float = Field(default=120.0, gt=0)
    consumer_group: str | None = None  # default: the service name
    consumer_offset_reset: Literal["earliest", "latest"] = "earliest"  # where a new group starts
    traces_file: str | None = None  # write OpenTelemetry spans here as JSON lines
    environment: str = "local"  # "production" refuses to start without TLS and authentication
    # Production refuses to start without INGRESS_SIGNING_KEYS unless this says unsigned HR and
    # app events are accepted on purpose (a private network, authentication by Kafka ACLs only).
    allow_unsigned_ingress: bool = False

    @model_validator(mode="after")
    def _replays_outlive_no_inbox(self) -> ServiceSettings:
        if self.ingress_signing_keys and self.signature_max_age_hours >= self.retention_days * 24:
            raise ValueError(
                f"SIGNATURE_MAX_AGE_HOURS ({self.signature_max_age_hours}) must be below "
                f"RETENTION_DAYS ({self.retention_days}) in hours: a signed event replayed after "
                "its inbox row was purged would be applied again"
            )
        return self

    def production_problems(self) -> list[str]:
        """What ENVIRONMENT=production refuses in these settings (services add their own)."""
        problems = []
        kafka = self.kafka
        if (
            kafka.security_protocol != "SASL_SSL"
            or not kafka.sasl_username
            or not kafka.sasl_password
        ):
            problems.append(
                "KAFKA_SECURITY_PROTOCOL=SASL_SSL with KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
            )
        if database_sslmode(self.database_url.get_secret_value()) not in VERIFIED_SSLMODES:
            problems.append(
                "DATABASE_URL with sslmode=verify-full (or verify-ca): TLS to PostgreSQL"
            )
        if not self.ingress_signing_keys and not self.allow_unsigned_ingress:
            problems.append(
                "INGRESS_SIGNING_KEYS for the tenants that publish (or ALLOW_UNSIGNED_INGRESS=true)"
            )
        return problems


VERIFIED_SSLMODES = frozenset({"verify-full", "verify-ca"})


def database_sslmode(dsn: str) -> str | None:
    """The `sslmode` a PostgreSQL URL asks for (None: libpq's default, which may be plain text)."""
    modes = parse_qs(urlsplit(dsn).query).get("sslmode")
    return modes[-1] if modes else None
