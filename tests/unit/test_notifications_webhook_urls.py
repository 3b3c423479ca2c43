"""Where webhooks may go: the rules on URLs and addresses, the startup check of
NOTIFICATIONS_TENANTS, the check of resolved addresses when a connection opens (DNS rebinding),
and what production refuses in the mail settings."""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr, ValidationError

from services.notifications import webhook
from services.notifications.errors import TransientError
from services.notifications.settings import (
    DEVELOPMENT_LINK_KEY,
    NotificationSettings,
    TenantChannel,
)
from services.notifications.webhook import RefusedDestination, WebhookSender
from services.notifications.webhook_urls import WebhookRules, refused_kind
from shared.local.probes import free_port
from shared.local.sinks import WebhookSink

pytestmark = pytest.mark.unit

NOBODY = WebhookRules()


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("169.254.169.254", "link-local"),  # the cloud metadata service
        ("fe80::1", "link-local"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("fd12:3456::1", "private"),
        ("100.64.0.1", "shared (CGNAT)"),
        ("100.127.255.254", "shared (CGNAT)"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("255.255.255.255", "reserved"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("::ffff:169.254.169.254", "link-local"),
        ("2002:a00:1::", "private"),  # 6to4 of 10.0.0.1
        ("64:ff9b::10.0.0.1", "private"),  # NAT64
    ],
)
def test_refused_addresses_say_what_they_are(address: str, kind: str) -> None:
    assert refused_kind(ipaddress.ip_address(address)) == kind


@pytest.mark.parametrize(
    "address", ["93.184.215.14", "8.8.8.8", "172.32.0.1", "100.128.0.1", "2606:4700::1111"]
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert refused_kind(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://hooks.example.com/x", "https is required"),
        ("ftp://hooks.example.com/x", "not an http(s) URL with a host"),
        ("https:///path-only", "not an http(s) URL with a host"),
        ("https://hooks.example.com:port/", "not a valid URL"),
        ("https://127.0.0.1:8443/hooks", "host 127.0.0.1 is a loopback address"),
        ("https://[::1]/hooks", "host ::1 is a loopback address"),
        ("https://169.254.169.254/latest/meta-data", "host 169.254.169.254 is a link-local"),
        ("https://10.0.0.7/hooks", "host 10.0.0.7 is a private address"),
        ("https://100.100.1.1/hooks", "host 100.100.1.1 is a shared (CGNAT) address"),
        ("https://[fd00::1]/hooks", "host fd00::1 is a private address"),
        ("https://0.0.0.0/hooks", "host 0.0.0.0 is a unspecified address"),
        ("https://localhost:8443/hooks", "host localhost is a loopback name"),
        ("https://api.LOCALHOST./hooks", "host api.localhost is a loopback name"),
    ],
)
def test_refused_urls_say_why(url: str, problem: str) -> None:
    found = NOBODY.url_problem(url)
    assert found is not None and found.startswith(problem), found


@pytest.mark.parametrize(
    "url", ["https://hooks.example.com/x", "https://8.8.8.8/x", "https://[2606:4700::1]:8443/"]
)
def test_public_https_urls_pass(url: str) -> None:
    assert NOBODY.url_problem(url) is None


def test_an_allowed_host_may_be_private_and_use_plain_http() -> None:
    rules = WebhookRules.allowing(["127.0.0.1", "Hooks.Internal.", "[::1]"])
    assert rules.url_problem("http://127.0.0.1:8080/hooks") is None
    assert rules.url_problem("https://hooks.internal/x") is None
    assert rules.url_problem("http://HOOKS.internal:81/x") is None
    assert rules.url_problem("http://[::1]:81/x") is None
    # allowing one host allows no other
    assert rules.url_problem("http://127.0.0.2:8080/hooks") is not None
    assert rules.url_problem("https://10.0.0.1/hooks") is not None


def test_resolved_addresses_are_checked_unless_the_host_or_address_is_allowed() -> None:
    name, private = "hooks.example.com", ipaddress.ip_address("10.0.0.5")
    problem = NOBODY.address_problem(name, private)
    assert problem == (
        "host hooks.example.com resolves to 10.0.0.5, a private address "
        "(refused unless listed in WEBHOOK_ALLOWED_HOSTS)"
    )
    assert NOBODY.address_problem(name, ipaddress.ip_address("93.184.215.14")) is None
    assert WebhookRules.allowing([name]).address_problem(name, private) is None
    assert WebhookRules.allowing(["10.0.0.5"]).address_problem(name, private) is None


# --- settings ---------------------------------------------------------------------------------


def hook(endpoint: str, tenant: str = "acme") -> TenantChannel:
    return TenantChannel(tenant_id=tenant, channel="webhook", endpoint=endpoint, secret="s")


def test_startup_refuses_a_webhook_to_a_refused_address_naming_the_tenant() -> None:
    with pytest.raises(ValidationError) as refused:
        NotificationSettings(
            notifications_tenants=[
                hook("https://hooks.example.com/ok", "fine"),
                hook("https://169.254.169.254/latest", "nosy"),
            ]
        )
    message = str(refused.value)
    assert "tenant 'nosy'" in message and "169.254.169.254 is a link-local address" in message
    with pytest.raises(ValidationError, match="tenant 'plain': https is required"):
        NotificationSettings(notifications_tenants=[hook("http://hooks.example.com/", "plain")])


def test_startup_accepts_allowed_hosts_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WEBHOOK_ALLOWED_HOSTS", json.dumps(["127.0.0.1"]))
    monkeypatch.setenv(
        "NOTIFICATIONS_TENANTS",
        json.dumps(
            [
                {
                    "tenant_id": "local",
                    "channel": "webhook",
                    "endpoint": "http://127.0.0.1:9999/hooks",
                    "secret": "s",
                }
            ]
        ),
    )
    settings = NotificationSettings()
    assert settings.webhook_allowed_hosts == ["127.0.0.1"]
    assert settings.webhook_rules.allows("127.0.0.1")


def test_production_refuses_mail_without_tls() -> None:
    def problems(**settings: object) -> list[str]:
        return [
            p
            for p in NotificationSettings(**settings).production_problems()  # type: ignore[arg-type]
            if "SMTP" in p or "NOTIFICATIONS_TENANTS" in p
        ]

    assert problems() == ["SMTP_USE_TLS=true or SMTP_STARTTLS=true: TLS to the SMTP server"]
    assert problems(smtp_starttls=False) != []
    assert problems(smtp_starttls=True) == []
    assert problems(smtp_use_tls=True) == []

    relays = [
        TenantChannel(tenant_id=t, channel="email", endpoint=e)
        for t, e in (
            ("plain", "smtp://relay.example.com:25"),
            ("off", "smtp://relay.example.com:587?starttls=false"),
            ("on", "smtp://relay.example.com:587?starttls=true"),
            ("implicit", "smtps://relay.example.com"),
        )
    ] + [TenantChannel(tenant_id="default", channel="email")]
    assert problems(smtp_starttls=True, notifications_tenants=relays) == [
        "NOTIFICATIONS_TENANTS: TLS to the email relays of tenants off, plain "
        "(smtp://...?starttls=true, or smtps://)"
    ]
    local_hook = hook("http://hooks.internal/x", "local")
    assert problems(
        smtp_starttls=True,
        webhook_allowed_hosts=["hooks.internal"],
        notifications_tenants=[local_hook],
    ) == [
        "NOTIFICATIONS_TENANTS: https webhooks for tenants local "
        "(plain http to an allowed host is for local receivers)"
    ]


def test_production_keeps_the_shared_rules() -> None:
    shared = NotificationSettings(smtp_starttls=True).production_problems()
    assert any(p.startswith("KAFKA_SECURITY_PROTOCOL=SASL_SSL") for p in shared)


# --- at send time -------------------------------------------------------------------------------


@pytest.fixture
async def sink() -> AsyncIterator[WebhookSink]:
    receiver = await WebhookSink().start()
    yield receiver
    await receiver.stop()


def sender(*allowed: str) -> WebhookSender:
    return WebhookSender(NotificationSettings(webhook_allowed_hosts=list(allowed)))


def resolving_to(address: str) -> object:
    async def resolve(host: str, port: int) -> list[ipaddress.IPv4Address]:
        return [ipaddress.IPv4Address(address)]

    return resolve


async def test_a_name_resolving_to_a_refused_address_is_refused_and_nothing_sent(
    sink: WebhookSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: the URL passes as written, its name resolves to loopback when the
    connection opens; the delivery fails for good, nothing reaches the address."""
    monkeypatch.setattr(webhook, "resolve", resolving_to("127.0.0.1"))
    url = f"https://rebind.test.invalid:{sink.port}/hooks"
    hooks = sender()
    assert hooks.rules.url_problem(url) is None
    with pytest.raises(RefusedDestination) as refused:
        await hooks.send(url, "s", "n-1", b"{}")
    await hooks.close()
    assert refused.value.permanent
    assert str(refused.value) == (
        "webhook refused: host rebind.test.invalid resolves to 127.0.0.1, a loopback address "
        "(refused unless listed in WEBHOOK_ALLOWED_HOSTS)"
    )
    assert sum(sink.counts.values()) == 0


async def test_an_allowed_address_lets_a_name_that_resolves_to_it_connect(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The guard lets the connection be tried: nothing listens there, so it fails as a network
    error (retried), not as a refusal."""
    monkeypatch.setattr(webhook, "resolve", resolving_to("127.0.0.1"))
    hooks = sender("127.0.0.1")
    with pytest.raises(TransientError, match="ConnectError"):
        await hooks.send(f"https://receiver.test.invalid:{free_port()}/hooks", "s", "n-1", b"{}")
    await hooks.close()


async def test_a_literal_refused_address_is_refused_at_send_time(sink: WebhookSink) -> None:
    """A row written straight into tenant_channels skips the startup check, not this one."""
    hooks = sender()
    with pytest.raises(RefusedDestination, match="https is required"):
        await hooks.send(sink.url, "s", "n-1", b"{}")
    with pytest.raises(RefusedDestination, match=re.escape("host 127.0.0.1 is a loopback address")):
        await hooks.send(f"https://127.0.0.1:{sink.port}/hooks", "s", "n-2", b"{}")
    await hooks.close()
    assert sum(sink.counts.values()) == 0

    hooks = sender("127.0.0.1")
    await hooks.send(sink.url, "s", "n-3", b"{}")
    await hooks.close()
    assert sum(sink.counts.values()) == 1


async def test_a_url_read_two_ways_is_refused(sink: WebhookSink) -> None:
    """The rules read the URL with urlsplit (host 127.0.0.1 here, allowed), aiohttp with yarl
    (which refuses it): a URL whose destination depends on the parser is refused for good."""
    hooks = sender("127.0.0.1")
    with pytest.raises(RefusedDestination, match="not a valid URL"):
        await hooks.send(f"http://hooks.example.com\\@127.0.0.1:{sink.port}/", "s", "n-1", b"{}")
    await hooks.close()
    assert sum(sink.counts.values()) == 0


async def test_an_allowed_name_is_reached_as_it_resolves(sink: WebhookSink) -> None:
    hooks = sender("localhost")
    await hooks.send(f"http://localhost:{sink.port}/hooks", "s", "n-1", b"{}")
    await hooks.close()
    assert sum(sink.counts.values()) == 1


def test_production_refuses_development_or_short_link_keys_and_plain_http_links() -> None:
    def problems(**settings: object) -> list[str]:
        return [
            p.split(":")[0]
            for p in NotificationSettings(**settings).production_problems()  # type: ignore[arg-type]
            if p.startswith(("LINK_SIGNING_KEYS", "PUBLIC_BASE_URL"))
        ]

    strong = [SecretStr("k" * 32)]
    assert problems() == ["LINK_SIGNING_KEYS", "PUBLIC_BASE_URL"]  # the development defaults
    assert problems(link_signing_keys=[SecretStr("short")]) == [
        "LINK_SIGNING_KEYS",
        "PUBLIC_BASE_URL",
    ]
    assert problems(link_signing_keys=[*strong, SecretStr(DEVELOPMENT_LINK_KEY)]) != []
    with pytest.raises(ValidationError, match="link_signing_keys"):
        NotificationSettings(link_signing_keys=[])  # no key, no link: refused at startup
    assert problems(link_signing_keys=strong, public_base_url="https://m.example.org") == []
