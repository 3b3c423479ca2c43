"""What the services' own HTTP endpoints share: reading a request's headers and a bounded body,
and answering JSON (plain ASGI: FastStream serves these routes by exact path)."""

from __future__ import annotations

import json
from typing import Any

from faststream.asgi.handlers import HttpHandler
from faststream.asgi.types import ASGIApp, Receive, Scope, Send

from shared.contract.envelope import media_type as content_media_type


class TooLarge(Exception):
    """The request's body is over the endpoint's limit (answer 413; the rest is left unread)."""


class Disconnected(Exception):
    """The client went away before the whole body arrived: a part of a request is no request."""


def header(scope: Scope, name: bytes) -> str:
    """A request header's value ("" when absent); `name` in lower case."""
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return ""


def media_type(scope: Scope) -> str:
    """The request's Content-Type without parameters, in lower case."""
    return content_media_type(header(scope, b"content-type"))


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole body, refused (TooLarge) as soon as it is known to exceed `limit` bytes: by its
    Content-Length before reading, or while reading."""
    declared = header(scope, b"content-length")
    if declared.isdigit() and int(declared) > limit:
        raise TooLarge
    chunks: list[bytes] = []
    size, more = 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise TooLarge
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)


async def send_json(
    send: Send,
    status: int,
    body: Any,
    headers: tuple[tuple[bytes, bytes], ...] = (),
    with_body: bool = True,
) -> None:
    payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"cache-control", b"no-store"),
                (b"x-content-type-options", b"nosniff"),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload if with_body else b""})


class Documented(HttpHandler):
    """A plain ASGI endpoint that the service's AsyncAPI page (/docs/asyncapi) lists, with its
    methods and `description` (Markdown). FastStream documents only its own handler type; the
    endpoint still answers every request itself (its own 405s included)."""

    def __init__(self, app: ASGIApp, methods: tuple[str, ...], description: str) -> None:
        super().__init__(
            _answered_by_app, methods=methods, description=description, include_in_schema=True
        )
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


async def _answered_by_app(scope: Scope) -> ASGIApp:
    raise NotImplementedError("Documented.__call__ hands every request to its app")
