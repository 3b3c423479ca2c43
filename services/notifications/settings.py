"""Settings of notifications: SMTP, webhooks, the delivery worker and reminder timing.

Every field reads the upper-case environment variable of its name (SMTP_HOST, ...), like the
shared ServiceSettings; durations are in seconds so tests can shrink them.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, Field, SecretStr, model_validator

from services.notifications.webhook_urls import WebhookRules
from shared.runtime.settings import ServiceSettings

DEVELOPMENT_LINK_KEY = "mentornet-local-development-only"  # ENVIRONMENT=production refuses it
TRUE = frozenset({"1", "true", "yes"})  # how `?starttls=` says yes (as smtp.tenant_server reads it)


class TenantChannel(BaseModel):
    """One row of `tenant_channels`, as given in NOTIFICATIONS_TENANTS (a JSON list).

    email: `endpoint` may name the tenant's own relay (`smtp://[user@]host:port[?starttls=true]`,
    password in `secret`); without it the SMTP_* settings apply. webhook: `endpoint` is the URL
    and `secret` the HMAC key (both required).
    """

    tenant_id: str = Field(min_length=1)
    channel: Literal["email", "webhook"]
    endpoint: str | None = None
    secret: SecretStr | None = None

    def relay_without_tls(self) -> bool:
        """An email relay of its own reached over plain SMTP (smtp:// without starttls=true)."""
        if self.channel != "email" or not self.endpoint:
            return False
        url = urlsplit(self.endpoint)
        starttls = parse_qs(url.query).get("starttls", [""])[0].lower()
        return url.scheme == "smtp" and starttls not in TRUE

    def webhook_without_tls(self) -> bool:
        """A webhook over plain http (possible only to a host in WEBHOOK_ALLOWED_HOSTS)."""
        endpoint = self.endpoint or ""
        return self.channel == "webhook" and urlsplit(endpoint).scheme.lower() == "http"


class NotificationSettings(ServiceSettings):
    http_port: int = 8003
    database_pool_size: int = 10

    # SMTP (the default relay of every tenant without its own)
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    smtp_from: str = "mentornet <no-reply@mentornet.local>"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool | None = None  # None: upgrade when the server offers STARTTLS
    smtp_use_tls: bool = False  # implicit TLS (port 465)
    smtp_timeout: float = 30.0
    smtp_connections: int = 8  # kept open per SMTP server and reused
    smtp_rate_per_second: float = 200.0  # per SMTP server; 0 = unlimited
    smtp_burst: int = 50

    # webhooks
    webhook_timeout: float = 10.0
    webhook_connections: int = 16  # kept open per endpoint origin
    webhook_rate_per_second: float = 100.0  # per endpoint (scheme, host, port); 0 = unlimited
    webhook_burst: int = 50
    # Host names or addresses webhooks may reach although they are (or resolve to) loopback,
    # private, link-local... addresses; these may also use plain http (local receivers).
    webhook_allowed_hosts: list[str] = Field(default_factory=list)

    # tenants: rows upserted into tenant_channels at startup; tenants without rows get email
    notifications_tenants: list[TenantChannel] = Field(default_factory=list)

    # the delivery worker
    delivery_tenants: list[str] | None = None  # only these tenants (dedicated replicas, tests)
    delivery_concurrency: int = 200  # sends in flight at once
    delivery_lease_seconds: float = 120.0  # a claimed row is ours this long
    delivery_poll_seconds: float = 1.0  # safety net; NOTIFY wakes the worker sooner
    delivery_flush_seconds: float = 0.02  # outcomes are written in batches this often
    delivery_max_attempts: int = 8
    retry_base_seconds: float = 30.0
    retry_max_seconds: float = 3600.0
    rate_limit_max_wait_seconds: float = 1.0  # a longer wait puts the row back instead
    contact_wait_seconds: float = 7 * 24 * 3600.0  # give up on an unknown recipient after this
    contact_poll_seconds: float = 300.0  # the contact's arrival also wakes waiting rows

    # reminders: sent this long before a proposal expires, to whoever has not answered
    reminder_before_seconds: float = 24 * 3600.0

    # answer links: where people open them, the keys that sign them, how long feedback links last
    public_base_url: str = "http://127.0.0.1:8003"  # this service's address as people reach it
    # Oldest first: the last signs new links, every one is tried when a link comes back, so a
    # new key is appended and the old one removed once its links have expired (links.py).
    link_signing_keys: list[SecretStr] = Field(
        default_factory=lambda: [SecretStr(DEVELOPMENT_LINK_KEY)], min_length=1
    )
    feedback_link_days: float = 30.0  # a check-in or closing feedback link works this long
    answer_max_bytes: int = 16 * 1024  # a form post larger than this is refused (413)

    @property
    def webhook_rules(self) -> WebhookRules:
        return WebhookRules.allowing(self.webhook_allowed_hosts)

    @model_validator(mode="after")
    def _webhooks_go_where_they_may(self) -> NotificationSettings:
        """A webhook URL that could only be refused at send time is refused now, naming the
        tenant (not the URL: it may carry a token)."""
        rules = self.webhook_rules
        for tenant in self.notifications_tenants:
            if tenant.channel != "webhook" or tenant.endpoint is None:
                continue
            problem = rules.url_problem(tenant.endpoint)
            if problem:
                raise ValueError(
                    f"NOTIFICATIONS_TENANTS: the webhook URL of tenant {tenant.tenant_id!r}: "
                    f"{problem}"
                )
        return self

    def production_problems(self) -> list[str]:
        """Besides the shared rules: mail (names, addresses, introductions) only over TLS."""
        problems = super().production_problems()
        keys = [k.get_secret_value() for k in self.link_signing_keys]
        if DEVELOPMENT_LINK_KEY in keys or min(map(len, keys)) < 32:
            problems.append(
                "LINK_SIGNING_KEYS: secret keys of 32 characters or more that sign answer links"
            )
        if not self.public_base_url.startswith("https://"):
            problems.append("PUBLIC_BASE_URL: an https:// address (answer links carry tokens)")
        if not self.smtp_use_tls and self.smtp_starttls is not True:
            problems.append("SMTP_USE_TLS=true or SMTP_STARTTLS=true: TLS to the SMTP server")
        tenants = self.notifications_tenants
        plain = sorted(t.tenant_id for t in tenants if t.relay_without_tls())
        if plain:
            problems.append(
                "NOTIFICATIONS_TENANTS: TLS to the email relays of tenants "
                f"{', '.join(plain)} (smtp://...?starttls=true, or smtps://)"
            )
        plain = sorted(t.tenant_id for t in tenants if t.webhook_without_tls())
        if plain:
            problems.append(
                f"NOTIFICATIONS_TENANTS: https webhooks for tenants {', '.join(plain)} "
                "(plain http to an allowed host is for local receivers)"
            )
        return problems

    @model_validator(mode="after")
    def _lease_outlasts_a_send(self) -> NotificationSettings:
        """A send must end before its lease does, or another replica could take the row and
        send it again; the worker refuses to start a send too close to the lease's end."""
        longest = max(self.smtp_timeout, self.webhook_timeout)
        if self.delivery_lease_seconds <= 2 * longest:
            raise ValueError(
                f"DELIVERY_LEASE_SECONDS ({self.delivery_lease_seconds}) must exceed twice the "
                f"longest send timeout (SMTP_TIMEOUT/WEBHOOK_TIMEOUT, {longest})"
            )
        return self
