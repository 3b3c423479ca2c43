"""Webhooks: a signed JSON POST per notification to the tenant's endpoint, over shared
keep-alive connections (httpx)."""

from __future__ import annotations

import asyncio
import importlib.util
import ssl
import sys
import time
from urllib.parse import urlsplit

import httpx

from services.notifications.errors import PermanentError, TransientError
from services.notifications.settings import NotificationSettings
from services.notifications.signature import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

RETRYABLE_4XX = frozenset({408, 429})

if importlib.util.find_spec("sniffio") is None:
    # httpcore tries `import sniffio` on every request and, when it is missing, searches the
    # whole sys.path each time (a failed import is not cached): ~40% of the CPU at 1,000
    # requests/s. A None entry makes the import fail at once; httpcore then assumes asyncio.
    sys.modules["sniffio"] = None  # type: ignore[assignment]


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
    redirect could carry a signed payload elsewhere."""

    def __init__(self, settings: NotificationSettings) -> None:
        self.seconds = settings.webhook_timeout
        self.timeout = httpx.Timeout(settings.webhook_timeout)
        self.connections = settings.webhook_connections
        self._pools: dict[str, asyncio.Queue[httpx.AsyncHTTPTransport]] = {}
        self._tls = ssl.create_default_context()  # loading the CA store once: ~20 ms each

    def _pool(self, url: str) -> asyncio.Queue[httpx.AsyncHTTPTransport]:
        key = origin(url)
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = asyncio.Queue()
            for _ in range(self.connections):
                pool.put_nowait(
                    httpx.AsyncHTTPTransport(
                        verify=self._tls,
                        limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
                    )
                )
        return pool

    async def send(self, url: str, secret: str, notification_id: str, body: bytes) -> None:
        """POST `body`; raises TransientError (network, 408, 429, 5xx) or PermanentError."""
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
