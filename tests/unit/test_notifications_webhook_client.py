"""The webhook sender (webhook.py, on aiohttp) against scripted receivers: what it sends, when
it reuses a connection and how many it opens, and how answers and failures are classified."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from services.notifications.errors import PermanentError, TransientError
from services.notifications.settings import NotificationSettings
from services.notifications.webhook import WebhookSender

pytestmark = pytest.mark.unit

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@dataclass
class Receiver:
    """Answers each request with the next of `answers` (bytes, or a coroutine that writes);
    keeps the requests and counts the connections opened."""

    answers: list[bytes | Callable[[asyncio.StreamWriter], Awaitable[None]]]
    requests: list[tuple[bytes, bytes]] = field(default_factory=list)
    connections: int = 0
    server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/hooks?x=1"

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while self.answers:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                self.requests.append((head, await reader.readexactly(length)))
                answer = self.answers.pop(0)
                if isinstance(answer, bytes):
                    writer.write(answer)
                    await writer.drain()
                else:
                    await answer(writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def closing(answer: bytes) -> Callable[[asyncio.StreamWriter], Awaitable[None]]:
    """An answer after which the receiver hangs up."""

    async def write(writer: asyncio.StreamWriter) -> None:
        writer.write(answer)
        await writer.drain()
        writer.close()

    return write


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver([])
    r.server = await asyncio.start_server(r.serve, "127.0.0.1", 0)
    yield r
    r.server.close()


def sender(timeout: float = 10.0) -> WebhookSender:
    return WebhookSender(
        NotificationSettings(
            webhook_allowed_hosts=["127.0.0.1"], webhook_timeout=timeout, webhook_connections=1
        )
    )


async def test_a_post_is_signed_and_the_connection_reused(receiver: Receiver) -> None:
    receiver.answers += [OK, b"HTTP/1.1 204 No Content\r\n\r\n", OK]
    hooks = sender()
    for n in range(3):
        await hooks.send(receiver.url, "secret", f"n-{n}", b'{"a":1}')
    await hooks.close()
    assert receiver.connections == 1  # kept alive, also across a 204 without a body
    head, body = receiver.requests[0]
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /hooks?x=1 HTTP/1.1"
    headers = dict(line.split(": ", 1) for line in lines[1:] if line)
    assert headers["Host"] == receiver.url.split("/")[2]
    assert headers["Idempotency-Key"] == "n-0" and headers["Content-Type"] == "application/json"
    assert body == b'{"a":1}' and headers["Content-Length"] == "7"
    signed = f"{headers['X-Mentornet-Timestamp']}.".encode() + body
    digest = hmac.new(b"secret", signed, hashlib.sha256).hexdigest()
    assert headers["X-Mentornet-Signature"] == f"sha256={digest}"


async def test_a_connection_the_server_closes_is_not_reused(receiver: Receiver) -> None:
    receiver.answers += [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
        closing(b"HTTP/1.0 200 OK\r\n\r\nbody to the end"),  # the body ends with the connection
        OK,
    ]
    hooks = sender()
    for n in range(3):
        await hooks.send(receiver.url, "s", f"n-{n}", b"{}")
    await hooks.close()
    assert receiver.connections == 3


async def test_an_idle_connection_closed_by_the_server_is_replaced(receiver: Receiver) -> None:
    receiver.answers += [closing(OK), OK]
    hooks = sender()
    await hooks.send(receiver.url, "s", "n-1", b"{}")
    await asyncio.sleep(0.05)  # the close reaches us while the connection is idle
    await hooks.send(receiver.url, "s", "n-2", b"{}")
    await hooks.close()
    assert receiver.connections == 2 and len(receiver.requests) == 2


@pytest.mark.parametrize(
    ("answer", "error", "message", "retry_after"),
    [
        (b"HTTP/1.1 503 X\r\nRetry-After: 7\r\nContent-Length: 0\r\n\r\n", TransientError,
         "HTTP 503", 7.0),
        (b"HTTP/1.1 429 X\r\nContent-Length: 0\r\n\r\n", TransientError, "HTTP 429", None),
        (b"HTTP/1.1 400 X\r\nContent-Length: 3\r\n\r\nno!", PermanentError, "HTTP 400", None),
        (b"HTTP/1.1 302 X\r\nLocation: http://elsewhere/\r\nContent-Length: 0\r\n\r\n",
         PermanentError, "HTTP 302", None),  # never followed
        (b"SMTP? 220 hello\r\n\r\n", TransientError, "ProtocolError", None),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", TransientError,
         "ClientPayloadError", None),
    ],
)  # fmt: skip
async def test_answers_are_classified(
    receiver: Receiver,
    answer: bytes,
    error: type[Exception],
    message: str,
    retry_after: float | None,
) -> None:
    receiver.answers += [closing(answer), OK]
    hooks = sender()
    with pytest.raises(error, match=message) as raised:
        await hooks.send(receiver.url, "s", "n-1", b"{}")
    assert type(raised.value) is error
    await asyncio.sleep(0.05)  # the hang-up reaches us
    if isinstance(raised.value, TransientError):
        assert raised.value.retry_after == retry_after
    await hooks.send(receiver.url, "s", "n-2", b"{}")  # the next send works on a new connection
    await hooks.close()


async def test_a_silent_server_times_out_and_its_connection_is_dropped(
    receiver: Receiver,
) -> None:
    async def never_answer(writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    receiver.answers += [never_answer, OK]
    hooks = sender(timeout=0.3)
    with pytest.raises(TransientError, match="TimeoutError"):
        await hooks.send(receiver.url, "s", "n-1", b"{}")
    await hooks.send(receiver.url, "s", "n-2", b"{}")  # not the half-used connection
    await hooks.close()
    assert receiver.connections == 2


async def test_a_pool_holds_at_most_webhook_connections_per_origin(receiver: Receiver) -> None:
    receiver.answers += [OK] * 12
    hooks = WebhookSender(
        NotificationSettings(webhook_allowed_hosts=["127.0.0.1"], webhook_connections=3)
    )
    await asyncio.gather(*(hooks.send(receiver.url, "s", f"n-{n}", b"{}") for n in range(12)))
    await hooks.close()
    assert receiver.connections == 3 and len(receiver.requests) == 12


async def test_a_url_or_id_that_would_bend_the_request_adds_no_line(receiver: Receiver) -> None:
    receiver.answers += [OK]
    hooks = sender()
    await hooks.send(receiver.url + " HTTP/1.1\r\nX-Injected: y", "s", "n-1", b"{}")
    head, _ = receiver.requests[0]
    request_line, *header_lines = head.split(b"\r\n")
    assert request_line.startswith(b"POST /hooks?x=1") and request_line.endswith(b" HTTP/1.1")
    assert request_line.count(b" ") == 2  # the URL's spaces and line breaks stay in the URL
    assert not any(line.lower().startswith(b"x-injected") for line in header_lines)
    with pytest.raises(PermanentError, match="control characters"):
        await hooks.send(receiver.url, "s", "n-2\r\nX-Injected: y", b"{}")
    await hooks.close()
    assert len(receiver.requests) == 1
