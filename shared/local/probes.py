"""Is it there yet? Free ports, open ports, HTTP answers, database states, and the one loop that
waits for any of them: the local stack, the tests and the benchmarks all ask these questions."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx


def free_ports(count: int) -> list[int]:
    """`count` distinct ports nothing listens on: all are held open at once, so none repeats."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def free_port() -> int:
    return free_ports(1)[0]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts connections on `port`."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


async def http_status(url: str, timeout: float = 5.0) -> int:
    async with httpx.AsyncClient() as client:
        return (await client.get(url, timeout=timeout)).status_code


async def answers(url: str) -> bool:
    """Whether `url` (a /healthz or /readyz) answers 200 or 204 within two seconds."""
    try:
        return await http_status(url, timeout=2.0) in (200, 204)
    except httpx.HTTPError:
        return False


class NotReady(RuntimeError):
    """What was waited for did not happen: the process behind it exited, or time ran out."""


async def wait_until(
    check: Callable[[], Awaitable[Any]],
    timeout: float,
    alive: Callable[[], bool] = lambda: True,
    every: float = 0.2,
) -> None:
    """Poll `check` until it returns something true; NotReady as soon as `alive()` is false (a
    process that exited will never answer) or once `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while not await check():
        if not alive():
            raise NotReady("exited during startup")
        if time.monotonic() > deadline:
            raise NotReady(f"not ready after {timeout:.0f} s")
        await asyncio.sleep(every)


async def wait_for(db: Any, query: str, *args: Any, timeout: float = 30) -> None:
    """Poll the database (a pool or a connection) until `query` returns something true."""
    try:
        await wait_until(lambda: db.fetchval(query, *args), timeout, every=0.1)
    except NotReady:
        raise NotReady(f"timed out after {timeout} s waiting for: {query} {args}") from None
