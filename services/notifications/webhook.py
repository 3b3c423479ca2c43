"""Webhooks: a signed JSON POST per notification to the tenant's endpoint, over shared
keep-alive connections (httpx), only where the webhook rules allow (webhook_urls.py)."""

from __future__ import annotations

import asyncio
import importlib.util
import ipaddress
import socket
import ssl
import sys
import time
from collections.abc import Iterable
from urllib.parse import urlsplit

import httpcore
import httpx

from services.notifications.errors import PermanentError, TransientError
from services.notifications.settings import NotificationSettings
from services.notifications.signature import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from services.notifications.webhook_urls import IPAddress, WebhookRules

RETRYABLE_4XX = frozenset({408, 429})

if importlib.util.find_spec("sniffio") is None:
    # httpcore tries `import sniffio` on every request and, when it is missing, searches the
    # whole sys.path each time (a failed import is not cached): ~40% of the CPU at 1,000
    # requests/s. A None entry makes the import fail at once; httpcore then assumes asyncio.
    sys.modules["sniffio"] = None  # type: ignore[assignment]


class RefusedDestination(PermanentError):
    """The webhook URL, or an address its host resolves to, is one we may not post to. Trying
    again cannot help until the configuration changes."""


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Opens webhook connections to addresses the rules allow, and only those. The host is
    resolved here and the connection made to the very address checked, so an answer that
    changes between the check and the connection (DNS rebinding) cannot slip through. TLS
    still verifies the certificate against the host name (httpcore passes it as SNI)."""

    def __init__(self, rules: WebhookRules) -> None:
        self.rules = rules
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if self.rules.allows(host):
            targets = [host]
        else:
            addresses = await resolve(host, port)
            for address in addresses:  # one refused address refuses the host: no lottery
                problem = self.rules.address_problem(host, address)
                if problem:
                    raise RefusedDestination(f"webhook refused: {problem}")
            targets = [str(a) for a in addresses]
        error: httpcore.ConnectError | None = None
        for target in targets:
            try:
                return await self._inner.connect_tcp(
                    target,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except httpcore.ConnectError as exc:
                error = exc
        assert error is not None
        raise error

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


async def resolve(host: str, port: int) -> list[IPAddress]:
    """The addresses of `host`, in the resolver's order, each once. A failed lookup is a
    connection error (retried), like any other network failure."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
    found: dict[IPAddress, None] = {}
    for *_, sockaddr in infos:
        found[ipaddress.ip_address(str(sockaddr[0]).split("%")[0])] = None
    return list(found)


class _GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport on one keep-alive connection opened through `backend` (httpx takes
    no network backend of its own, so its connection pool is replaced by the same pool with
    the backend)."""

    def __init__(self, tls: ssl.SSLContext, backend: httpcore.AsyncNetworkBackend) -> None:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        super().__init__(verify=tls, limits=limits)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=tls,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=backend,
        )


def origin(url: str) -> str:
    """Rate limits are per endpoint origin: scheme, host and port."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port or ''}"


class WebhookSender:
    """Up to `webhook_connections` keep-alive connections per endpoint origin, each its own
    one-connection httpx transport handed out through a queue (like the SMTP sessions).

    Why not one `httpx.AsyncClient`: its pool re-checks every connection for every request, so
    at 16+ connections the bookkeeping cost ~1.5 ms of CPU a request, three times the cost of
    this layout, and a slow endpoint could hold a shared pool. Redirects are not followed: a
    redirect could carry a signed payload elsewhere, past the webhook rules."""

    def __init__(self, settings: NotificationSettings) -> None:
        self.seconds = settings.webhook_timeout
        self.timeout = httpx.Timeout(settings.webhook_timeout)
        self.connections = settings.webhook_connections
        self.rules = settings.webhook_rules
        self._backend = GuardedBackend(self.rules)
        self._pools: dict[str, asyncio.Queue[httpx.AsyncHTTPTransport]] = {}
        self._tls = ssl.create_default_context()  # loading the CA store once: ~20 ms each

    def _pool(self, url: str) -> asyncio.Queue[httpx.AsyncHTTPTransport]:
        key = origin(url)
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = asyncio.Queue()
            for _ in range(self.connections):
                pool.put_nowait(_GuardedTransport(self._tls, self._backend))
        return pool

    async def send(self, url: str, secret: str, notification_id: str, body: bytes) -> None:
        """POST `body`; raises TransientError (network, 408, 429, 5xx) or PermanentError
        (among them RefusedDestination: a URL or address the webhook rules refuse)."""
        problem = self.rules.url_problem(url)  # rows written straight into tenant_channels too
        if problem:
            raise RefusedDestination(f"webhook refused: {problem}")
        timestamp = int(time.time())
        request = httpx.Request(
            "POST",
            url,
            content=body,
            headers={
                "Content-Type": "application/json",
                "User-Agent": "mentornet-notifications/1",
                SIGNATURE_HEADER: sign(secret, timestamp, body),
                TIMESTAMP_HEADER: str(timestamp),
                "Idempotency-Key": notification_id,
            },
            extensions={"timeout": self.timeout.as_dict()},
        )
        pool = self._pool(url)
        try:
            async with asyncio.timeout(self.seconds):  # all told, so it ends before the lease
                transport = await pool.get()
                try:
                    response = await transport.handle_async_request(request)
                    await response.aread()
                    await response.aclose()
                finally:
                    pool.put_nowait(transport)
        except (httpx.HTTPError, TimeoutError) as exc:
            raise TransientError(f"{type(exc).__name__}: {exc}") from exc
        status = response.status_code
        if 200 <= status < 300:
            return
        message = f"HTTP {status}"
        if status >= 500 or status in RETRYABLE_4XX:
            raise TransientError(message, retry_after=_retry_after(response))
        raise PermanentError(message)

    async def close(self) -> None:
        for pool in self._pools.values():
            while not pool.empty():
                await pool.get_nowait().aclose()


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    return float(value) if value.isdigit() else None
