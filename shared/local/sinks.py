"""Local receivers for tests and the benchmark: an SMTP server (aiosmtpd) and a webhook endpoint.

Like shared/local/mailcatcher.py they stand in for the outside world, but keep what they receive in
memory and count it by Message-ID / Idempotency-Key, which is how duplicates are found. The SMTP
sink can refuse a recipient's first attempts (421) to play a server that recovers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import asyncpg
from aiosmtpd.controller import Controller

from services.notifications.domain import notification_id
from services.notifications.repository import NOTIFY_CHANNEL
from shared.local.probes import free_port

_MESSAGE_ID = re.compile(rb"^Message-ID:\s*(<[^>\r\n]+>)", re.IGNORECASE | re.MULTILINE)


@dataclass
class Mail:
    message_id: str
    recipients: list[str]
    content: bytes
    received_at: float

    def parsed(self) -> Message:
        return message_from_bytes(self.content)


@dataclass
class SmtpSink:
    """aiosmtpd in its own thread. `keep=False` only counts (for the benchmark)."""

    host: str = "127.0.0.1"
    port: int = field(default_factory=free_port)
    keep: bool = True
    mails: list[Mail] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    refuse: dict[str, int] = field(default_factory=dict)  # address -> 421s still to give
    attempts: dict[str, list[float]] = field(default_factory=dict)  # address -> RCPT times
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _controller: Controller | None = None

    def start(self) -> SmtpSink:
        self._controller = Controller(
            self, hostname=self.host, port=self.port, enable_SMTPUTF8=True, ready_timeout=10
        )
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()

    def env(self) -> dict[str, str]:
        """The settings that make the notifications service deliver here."""
        return {"SMTP_HOST": self.host, "SMTP_PORT": str(self.port)}

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        with self._lock:
            if self.keep:
                self.attempts.setdefault(address, []).append(time.monotonic())
            if self.refuse.get(address, 0) > 0:
                self.refuse[address] -= 1
                return "421 4.3.2 Service not available, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content = envelope.original_content or envelope.content or b""
        if isinstance(content, str):
            content = content.encode("utf-8", "surrogateescape")
        found = _MESSAGE_ID.search(content)
        message_id = found.group(1).decode() if found else ""
        with self._lock:
            self.counts[message_id] += 1
            if self.keep:
                self.mails.append(
                    Mail(message_id, list(envelope.rcpt_tos), content, time.monotonic())
                )
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[Mail]:
        with self._lock:
            return [m for m in self.mails if address in m.recipients]


@dataclass
class Hook:
    path: str
    headers: dict[str, str]
    body: bytes
    received_at: float


@dataclass
class WebhookSink:
    """A minimal HTTP/1.1 server (keep-alive, Content-Length bodies) answering `status`."""

    host: str = "127.0.0.1"
    port: int = field(default_factory=free_port)
    keep: bool = True
    status: int = 200
    hooks: list[Hook] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    _server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/hooks"

    async def start(self) -> WebhookSink:
        self._server = await asyncio.start_server(self._serve, self.host, self.port, backlog=1024)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, *lines = head.decode("latin-1").split("\r\n")
                headers = {}
                for line in lines:
                    if ":" in line:
                        name, value = line.split(":", 1)
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.counts[headers.get("idempotency-key", "")] += 1
                if self.keep:
                    path = request_line.split(" ")[1] if " " in request_line else ""
                    self.hooks.append(Hook(path, headers, body, time.monotonic()))
                writer.write(
                    f"HTTP/1.1 {self.status} X\r\ncontent-length: 0\r\n\r\n".encode("latin-1")
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@dataclass(frozen=True)
class Pending:
    """A proposal notification to queue straight in the delivery log, with its recipient."""

    tenant_id: str
    person_id: str
    source_event_id: str
    channel: str = "email"
    languages: tuple[str, ...] = ("en",)


async def seed_proposals(
    pool: asyncpg.Pool, pending: Sequence[Pending], give_up_after: timedelta
) -> list[str]:
    """Write the contacts and due `match-proposal` deliveries in one transaction and wake the
    workers: how the benchmark and the crash test queue thousands of notifications at once,
    without Kafka. Returns the notification ids, in order."""
    now = datetime.now(UTC)
    context = json.dumps(
        {
            "match_id": "seeded",
            "program_id": "seeded",
            "role": "mentee",
            "score": 0.8,
            "expires_at": (now + timedelta(days=3)).isoformat(),
            "explanation": [{"criterion": "topic_fit", "reason": "python, data"}],
        }
    )
    ids = [
        notification_id(p.tenant_id, p.source_event_id, p.person_id, p.channel, "match-proposal")
        for p in pending
    ]
    contacts = [
        (p.tenant_id, p.person_id, "mentee", f"Person {p.person_id}",
         f"{p.person_id}@{p.tenant_id}.test", list(p.languages), "Europe/Paris", now)
        for p in pending
    ]  # fmt: skip
    deliveries = [
        (nid, p.tenant_id, p.source_event_id, p.person_id, p.channel, "match-proposal",
         "proposals", context, now, now + give_up_after)
        for nid, p in zip(ids, pending, strict=True)
    ]  # fmt: skip
    async with pool.acquire() as conn, conn.transaction():
        await conn.copy_records_to_table(
            "contacts",
            schema_name="notifications",
            columns=["tenant_id", "person_id", "role", "display_name", "email", "languages",
                     "timezone", "registered_at"],
            records=contacts,
        )  # fmt: skip
        await conn.copy_records_to_table(
            "deliveries",
            schema_name="notifications",
            columns=["id", "tenant_id", "source_event_id", "recipient_id", "channel", "kind",
                     "category", "context", "next_attempt_at", "give_up_at"],
            records=deliveries,
        )  # fmt: skip
        await conn.execute(f"NOTIFY {NOTIFY_CHANNEL}")
    return [str(nid) for nid in ids]


def main(argv: list[str] | None = None) -> None:
    """`python -m shared.local.sinks smtp|webhook --port N --report FILE`: run a sink
    in its own process (the benchmark does, so neither shares a GIL with the other) until
    SIGTERM, then write its counts by Message-ID / Idempotency-Key to FILE as JSON."""
    parser = argparse.ArgumentParser(description="a local SMTP or webhook sink")
    parser.add_argument("kind", choices=("smtp", "webhook"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--report", type=Path, required=True)
    args = parser.parse_args(argv)

    async def serve() -> Counter[str]:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        if args.kind == "smtp":
            smtp = SmtpSink(port=args.port, keep=False).start()
            print("ready", flush=True)
            await stop.wait()
            smtp.stop()
            return smtp.counts
        hooks = await WebhookSink(port=args.port, keep=False).start()
        print("ready", flush=True)
        await stop.wait()
        await hooks.stop()
        return hooks.counts

    counts = asyncio.run(serve())
    args.report.write_text(json.dumps(dict(counts)))


if __name__ == "__main__":
    main()
