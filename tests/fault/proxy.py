"""A small TCP proxy that plays a bad network between the services and PostgreSQL.

Services are given the proxy's port in DATABASE_URL; the proxy forwards every connection to the
real server and can, on demand:

- add latency: every chunk waits `latency` seconds before it is forwarded (each direction, so a
  round trip costs twice that);
- reset connections: every open connection is closed with a TCP RST (SO_LINGER 0), as a crashed
  firewall or load balancer does;
- blackhole traffic for a while: nothing is forwarded in either direction and new connections
  are accepted but get no answer, as when packets are silently dropped. TCP retransmits what a
  real blackhole drops, so bytes held here are delivered, late, when the blackhole ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from dataclasses import dataclass, field


@dataclass
class ProxyStats:
    connections: int = 0
    resets: int = 0
    bytes_forwarded: int = 0
    blackholes: int = 0


@dataclass(eq=False)  # hashed by identity: links live in a set
class _Link:
    """One proxied connection: the service side and the server side."""

    client: asyncio.StreamWriter
    server: asyncio.StreamWriter | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


def _abort_with_rst(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class TcpProxy:
    """`async with TcpProxy(port) as proxy:` listens on `proxy.port` (a free one by default)."""

    def __init__(
        self,
        upstream_port: int,
        upstream_host: str = "127.0.0.1",
        listen_port: int = 0,
        listen_host: str = "127.0.0.1",
    ) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.listen = (listen_host, listen_port)
        self.latency = 0.0
        self.stats = ProxyStats()
        self._open = asyncio.Event()  # set: traffic flows; cleared: blackhole
        self._open.set()
        self._links: set[_Link] = set()
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "the proxy is not started"
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, *self.listen, backlog=512)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self.reset_all()
        self._open.set()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def __aenter__(self) -> TcpProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ faults

    def reset_all(self) -> int:
        """Close every open connection with a TCP RST; returns how many were reset."""
        links = list(self._links)
        for link in links:
            self._close(link, rst=True)
        self.stats.resets += len(links)
        return len(links)

    def blackhole(self, on: bool = True) -> None:
        """Stop (or resume) forwarding anything, in both directions and for new connections."""
        if on:
            self._open.clear()
            self.stats.blackholes += 1
        else:
            self._open.set()

    @property
    def blackholed(self) -> bool:
        return not self._open.is_set()

    @property
    def open_connections(self) -> int:
        return len(self._links)

    # ------------------------------------------------------------------ plumbing

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats.connections += 1
        link = _Link(writer)
        self._links.add(link)
        try:
            await self._open.wait()  # a blackhole answers nothing, not even the connection
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.upstream)
            except OSError:
                self._close(link, rst=True)  # the server is down: refuse as it would
                return
            link.server = up_writer
            if link not in self._links:  # reset while connecting
                up_writer.transport.abort()
                return
            link.tasks = [
                asyncio.create_task(self._pipe(reader, up_writer, link)),
                asyncio.create_task(self._pipe(up_reader, writer, link)),
            ]
            await asyncio.gather(*link.tasks, return_exceptions=True)
        finally:
            self._close(link, rst=False)

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: _Link
    ) -> None:
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                await self._open.wait()
                if self.latency:
                    await asyncio.sleep(self.latency)
                writer.write(data)
                await writer.drain()
                self.stats.bytes_forwarded += len(data)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._close(link, rst=False)

    def _close(self, link: _Link, rst: bool) -> None:
        if link not in self._links:
            return
        self._links.discard(link)
        for side in (link.client, link.server):
            if side is None:
                continue
            if rst:
                _abort_with_rst(side)
            else:
                with contextlib.suppress(Exception):
                    side.close()
        current = asyncio.current_task()
        for task in link.tasks:
            if task is not current:
                task.cancel()
