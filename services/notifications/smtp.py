"""Email over SMTP: message building and a small pool of reused connections per server.

Opening an SMTP session costs several round trips (greeting, EHLO, maybe STARTTLS and AUTH), so
each server keeps up to `smtp_connections` sessions open and sends one message after another on
each; that is where the throughput comes from.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, parseaddr
from urllib.parse import parse_qs, urlsplit

import aiosmtplib

from services.notifications.errors import PermanentError, TransientError
from services.notifications.rendering import Rendered
from services.notifications.settings import NotificationSettings

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_ADDRESS = re.compile(r"^[!-;=?-~]+@[!-;=?-~]+$")  # printable ASCII without <, >, space
IDLE_CHECK_SECONDS = 15.0  # a session idle longer than this is probed with NOOP before use


@dataclass(frozen=True)
class SmtpServer:
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    starttls: bool | None = None
    use_tls: bool = False

    @property
    def key(self) -> str:
        """Sessions and rate limits are per server (and login)."""
        return f"smtp://{self.username + '@' if self.username else ''}{self.host}:{self.port}"


def default_server(settings: NotificationSettings) -> SmtpServer:
    return SmtpServer(
        settings.smtp_host,
        settings.smtp_port,
        settings.smtp_username,
        settings.smtp_password.get_secret_value() if settings.smtp_password else None,
        settings.smtp_starttls,
        settings.smtp_use_tls,
    )


def tenant_server(endpoint: str, secret: str | None) -> SmtpServer:
    """A tenant's own relay: `smtp://[user@]host[:port][?starttls=true|false]` (smtps:// for
    implicit TLS); the password is the channel's secret, never part of the URL."""
    url = urlsplit(endpoint)
    if url.scheme not in ("smtp", "smtps") or not url.hostname:
        raise PermanentError(f"email endpoint {url.scheme}://{url.hostname} is not smtp://host")
    starttls = parse_qs(url.query).get("starttls", [None])[0]
    return SmtpServer(
        url.hostname,
        url.port or (465 if url.scheme == "smtps" else 25),
        url.username,
        secret,
        None if starttls is None else starttls.lower() in ("1", "true", "yes"),
        url.scheme == "smtps",
    )


def header_text(value: str) -> str:
    """Names come from HR systems: no line breaks may reach a header."""
    return _CONTROL.sub(" ", value).strip()


def _encoded(value: str) -> str:
    """A header value: as is when it is ASCII, else RFC 2047 base64 encoded words of at most
    45 bytes each (75 characters once encoded), never splitting a character. Hand-made because
    `email.header.Header` spends ~0.2 ms a subject choosing between encodings."""
    value = header_text(value)
    if value.isascii():
        return value
    words: list[str] = []
    chunk = bytearray()
    for char in value:
        encoded = char.encode()
        if len(chunk) + len(encoded) > 45:
            words.append(base64.b64encode(chunk).decode())
            chunk.clear()
        chunk += encoded
    words.append(base64.b64encode(chunk).decode())
    return "\r\n ".join(f"=?utf-8?b?{word}?=" for word in words)


def _address(name: str, email: str) -> str:
    if not _ADDRESS.match(email):
        raise PermanentError("the recipient address is not a plain ASCII address")
    name = header_text(name)
    if not name:
        return email
    if name.isascii():
        quoted = name.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{quoted}" <{email}>'
    return f"{_encoded(name)} <{email}>"


def _quoted_printable(text: str) -> bytes:
    lines = text.replace("\r\n", "\n").replace("\r", "\n")
    return binascii.b2a_qp(lines.encode(), istext=True).replace(b"\n", b"\r\n")


def build_message(
    *,
    notification_id: str,
    sender: str,
    to_name: str,
    to_email: str,
    rendered: Rendered,
    kind: str,
) -> bytes:
    """Plain text and HTML alternatives, both quoted-printable (7-bit safe for any relay).

    The Message-ID derives from the notification id, so a message sent twice (a crash after
    the server accepted it) is recognisably the same message. Written by hand rather than with
    `email.message.EmailMessage`, which costs ~2 ms a message, the whole budget at 500/s."""
    boundary = f"=_mentornet_{notification_id}"  # "=_" never occurs in quoted-printable
    head = "\r\n".join(
        (
            f"Message-ID: <{notification_id}@mentornet>",
            f"Date: {format_datetime(datetime.now(UTC))}",
            f"From: {_encoded(sender)}",
            f"To: {_address(to_name, to_email)}",
            f"Subject: {_encoded(rendered.subject)}",
            f"Content-Language: {rendered.locale}",
            "Auto-Submitted: auto-generated",
            f"X-Mentornet-Kind: {kind}",
            "MIME-Version: 1.0",
            f'Content-Type: multipart/alternative; boundary="{boundary}"',
        )
    )
    part = (
        "--{b}\r\nContent-Type: text/{t}; charset=utf-8\r\n"
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    )
    return b"".join(
        (
            head.encode(),
            b"\r\n\r\n",
            part.format(b=boundary, t="plain").encode(),
            _quoted_printable(rendered.text),
            b"\r\n",
            part.format(b=boundary, t="html").encode(),
            _quoted_printable(rendered.html),
            f"\r\n--{boundary}--\r\n".encode(),
        )
    )


class _Session:
    def __init__(self, server: SmtpServer, timeout: float) -> None:
        self.server = server
        self.timeout = timeout
        self.client: aiosmtplib.SMTP | None = None
        self.last_used = 0.0

    async def ready(self) -> aiosmtplib.SMTP:
        client = self.client
        if client is not None and client.is_connected:
            if time.monotonic() - self.last_used < IDLE_CHECK_SECONDS:
                return client
            try:  # servers drop idle sessions; find out now rather than mid-message
                await client.noop()
                return client
            except aiosmtplib.SMTPException:
                self.close()
        s = self.server
        client = aiosmtplib.SMTP(
            hostname=s.host,
            port=s.port,
            username=s.username,
            password=s.password,
            start_tls=s.starttls,
            use_tls=s.use_tls,
            timeout=self.timeout,
        )
        await client.connect()
        self.client = client
        self.last_used = time.monotonic()
        return client

    def close(self) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.close()
        self.client = None


class SmtpSender:
    def __init__(self, settings: NotificationSettings) -> None:
        self.settings = settings
        self.default = default_server(settings)
        self.envelope_from = parseaddr(settings.smtp_from)[1] or settings.smtp_from
        self._pools: dict[str, asyncio.Queue[_Session]] = {}

    def _pool(self, server: SmtpServer) -> asyncio.Queue[_Session]:
        pool = self._pools.get(server.key)
        if pool is None:
            pool = self._pools[server.key] = asyncio.Queue()
            for _ in range(self.settings.smtp_connections):
                pool.put_nowait(_Session(server, self.settings.smtp_timeout))
        return pool

    async def send(self, server: SmtpServer, recipient: str, message: bytes) -> None:
        """Deliver one message within `smtp_timeout` all told (waiting for a session included),
        so a send always ends before its lease; raises TransientError or PermanentError."""
        try:
            async with asyncio.timeout(self.settings.smtp_timeout):
                await self._send(server, recipient, message)
        except TimeoutError as exc:
            raise TransientError(f"SMTP timed out after {self.settings.smtp_timeout}s") from exc

    async def _send(self, server: SmtpServer, recipient: str, message: bytes) -> None:
        pool = self._pool(server)
        session = await pool.get()
        try:
            client = await session.ready()
            try:  # MAIL, RCPT, DATA by hand: `sendmail` parses both addresses twice more
                await client.mail(self.envelope_from)
                await client.rcpt(recipient)
                await client.data(message)
            except aiosmtplib.SMTPResponseException as refused:
                if refused.code != 421:  # the session goes on: clear the envelope
                    with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                        await client.rset()
                raise
            session.last_used = time.monotonic()
        except (aiosmtplib.SMTPException, OSError) as exc:
            refusal = isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code != 421
            if not (refusal and client.is_connected):
                session.close()  # 421: the server is closing; otherwise the state is unknown
            raise classify(exc) from exc
        except BaseException:  # cancelled mid-command (our timeout, or shutdown)
            session.close()
            raise
        finally:
            pool.put_nowait(session)

    async def close(self) -> None:
        for pool in self._pools.values():
            while not pool.empty():
                session = pool.get_nowait()
                if session.client is not None and session.client.is_connected:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(session.client.quit(), 2.0)
                session.close()


def classify(exc: BaseException) -> TransientError | PermanentError:
    """5xx to RCPT or DATA is about this recipient or message: permanent. 5xx to EHLO, AUTH or
    MAIL FROM is our configuration, which affects every message and gets fixed: transient, so
    nothing is failed for good while the relay is misconfigured (the attempt limit still
    applies). 4xx, timeouts and connection errors are transient."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in exc.recipients]
        text = "; ".join(f"{r.code} {r.message}" for r in exc.recipients)
        if codes and all(code >= 500 for code in codes):
            return PermanentError(f"recipient refused: {text}")
        return TransientError(f"recipient deferred: {text}")
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        message = f"SMTP {exc.code} {exc.message}"
        if exc.code >= 500 and isinstance(
            exc, aiosmtplib.SMTPDataError | aiosmtplib.SMTPRecipientRefused
        ):
            return PermanentError(message)
        return TransientError(message)
    return TransientError(f"{type(exc).__name__}: {exc}")
