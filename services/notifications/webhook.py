"""Webhooks: a signed JSON POST per notification to the tenant's endpoint, over kept-alive
connections (aiohttp), only where the webhook rules allow (webhook_urls.py).

aiohttp rather than httpx: httpx and httpcore (anyio cancel scopes, h11 events, a pool that
re-checks every connection) cost ~0.7 ms of CPU a request, more than rendering and SMTP
together. Redirects are never followed: a redirect could carry a signed payload elsewhere, past
the webhook rules.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import time
from collections.abc import Mapping
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from services.notifications.errors import PermanentError, TransientError
from services.notifications.settings import NotificationSettings
from services.notifications.signature import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from services.notifications.webhook_urls import IPAddress, WebhookRules, normalised

RETRYABLE_4XX = frozenset({408, 429})
KEEPALIVE_SECONDS = 5.0  # an idle connection older than this is closed, not reused (as httpx)


class RefusedDestination(PermanentError):
    """The webhook URL, or an address its host resolves to, is one we may not post to. Trying
    again cannot help until the configuration changes."""


async def resolve(host: str, port: int) -> list[IPAddress]:
    """The addresses of `host`, in the resolver's order, each once. A failed lookup is a
    connection error (retried), like any other network failure."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise TransientError(f"ConnectError: cannot resolve {host}: {exc}") from exc
    found: dict[IPAddress, None] = {}
    for *_, sockaddr in infos:
        found[ipaddress.ip_address(str(sockaddr[0]).split("%")[0])] = None
    return list(found)


class GuardedResolver(AbstractResolver):
    """aiohttp connects only to the addresses this returns: the host's addresses, each checked
    against the rules, so the connection goes to the very address checked and an answer that
    changes between the check and the connection (DNS rebinding) cannot slip through. TLS still
    verifies the certificate against the host name (aiohttp takes it from the URL). aiohttp
    never asks about an address written in the URL: `WebhookSender.send` checks those."""

    def __init__(self, rules: WebhookRules) -> None:
        self.rules = rules

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_UNSPEC
    ) -> list[ResolveResult]:
        addresses = await resolve(host, port)
        for address in addresses:  # one refused address refuses the host: no lottery
            problem = self.rules.address_problem(host, address)
            if problem:
                raise RefusedDestination(f"webhook refused: {problem}")
        found: list[ResolveResult] = [
            {
                "hostname": host,
                "host": str(address),
                "port": port,
                "family": socket.AF_INET if address.version == 4 else socket.AF_INET6,
                "proto": socket.IPPROTO_TCP,
                "flags": socket.AI_NUMERICHOST,
            }
            for address in addresses
        ]
        if family != socket.AF_UNSPEC:
            found = [f for f in found if f["family"] == family]
        if not found:
            raise TransientError(f"ConnectError: no {family.name} address for {host}")
        return found

    async def close(self) -> None:
        pass


def origin(url: str) -> str:
    """Rate limits are per endpoint origin: scheme, host and port."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port or ''}"


class WebhookSender:
    """One aiohttp session for all endpoints, with up to `webhook_connections` kept-alive
    connections per endpoint origin (no limit over all of them): a slow endpoint holds only its
    own."""

    def __init__(self, settings: NotificationSettings) -> None:
        self.seconds = settings.webhook_timeout
        self.connections = settings.webhook_connections
        self.rules = settings.webhook_rules
        self._tls = ssl.create_default_context()  # loading the CA store once: ~20 ms each
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        """Made at the first send: aiohttp wants a running event loop."""
        if self._session is None:
            connector = aiohttp.TCPConnector(
                ssl=self._tls,
                resolver=GuardedResolver(self.rules),
                limit=0,
                limit_per_host=self.connections,
                keepalive_timeout=KEEPALIVE_SECONDS,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                # one timeout for all of a send, waiting for a connection too: ends before the lease
                timeout=aiohttp.ClientTimeout(total=self.seconds),
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,  # the answer's body is thrown away: never compressed
                skip_auto_headers=("Accept-Encoding",),
                trust_env=False,  # no proxy from the environment
            )
        return self._session

    async def send(self, url: str, secret: str, notification_id: str, body: bytes) -> None:
        """POST `body`; raises TransientError (network, 408, 429, 5xx) or PermanentError
        (among them RefusedDestination: a URL or address the webhook rules refuse)."""
        problem = self.rules.url_problem(url)  # rows written straight into tenant_channels too
        if problem:
            raise RefusedDestination(f"webhook refused: {problem}")
        target = _as_checked(url)
        if any(c < " " for c in notification_id):
            raise PermanentError("a header value with control characters")
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "mentornet-notifications/1",
            SIGNATURE_HEADER: sign(secret, timestamp, body),
            TIMESTAMP_HEADER: str(timestamp),
            "Idempotency-Key": notification_id,
        }
        try:
            async with self._client().post(
                target, data=body, headers=headers, allow_redirects=False
            ) as response:
                async for _ in response.content.iter_chunked(65536):  # discarded, to the end
                    pass
        except TimeoutError as exc:  # aiohttp's timeouts are TimeoutErrors too: caught first
            raise TransientError(f"TimeoutError: no answer within {self.seconds}s") from exc
        except aiohttp.ClientConnectorError as exc:  # refused, unreachable, TLS handshake...
            raise TransientError(f"ConnectError: {exc}") from exc
        except aiohttp.ClientResponseError as exc:  # no status to judge: not an HTTP answer
            raise TransientError(f"ProtocolError: {exc.message}") from exc
        except (aiohttp.ClientError, OSError) as exc:  # the endpoint hung up mid-answer...
            raise TransientError(f"{type(exc).__name__}: {exc}") from exc
        status = response.status
        if 200 <= status < 300:
            return
        message = f"HTTP {status}"
        if status >= 500 or status in RETRYABLE_4XX:
            raise TransientError(message, retry_after=_retry_after(response.headers))
        raise PermanentError(message)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _as_checked(url: str) -> URL:
    """`url` as aiohttp will read it, refused unless that names the scheme, host and port the
    rules just checked (read by urlsplit): two parsers must not see two destinations. aiohttp
    connects to an address written in the URL without asking the resolver."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    try:
        target = URL(url.strip())
    except ValueError:
        raise RefusedDestination("webhook refused: not a valid URL") from None
    ours, theirs = parts.hostname or "", target.raw_host or ""
    same = (
        target.scheme == scheme
        and target.port == (parts.port or (443 if scheme == "https" else 80))
        and (ours == theirs or normalised(ours) == normalised(theirs))  # the first: fast
    )
    if not same:
        raise RefusedDestination("webhook refused: not a valid URL")
    return target


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Retry-After", "")
    return float(value) if value.isdigit() else None
