"""Helpers for tests that talk to the real broker, database and services."""

from __future__ import annotations

import asyncio
import email
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from shared.contract.topics import read_by
from shared.local.stack import REPO_ROOT


def unique(prefix: str) -> str:
    """A fresh id, so tests share one broker and one database without stepping on each other."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cloud_event(type_: str, tenant: str, data: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """A CloudEvents 1.0 structured-mode event, written by hand as an HR system would."""
    event = {
        "specversion": "1.0",
        "id": uuid.uuid4().hex,
        "source": "hr/test-suite",
        "type": type_,
        "time": datetime.now(UTC).isoformat(),
        "datacontenttype": "application/json",
        "tenantid": tenant,
        "data": data,
    }
    event.update(overrides)
    return event


async def publish_raw(
    bootstrap: str,
    records: Iterable[tuple[str, bytes | None, bytes]],
    headers: list[tuple[str, bytes]] | None = None,
) -> None:
    """Publish raw bytes through a plain producer: no project code on the way in."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(t, v, key=k, headers=headers) for t, k, v in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


class TopicReader:
    """Reads topics from their current end: only what is published after it was opened."""

    def __init__(self, bootstrap: str, *topics: str) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        self.consumer: AIOKafkaConsumer | None = None

    async def __aenter__(self) -> TopicReader:
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False
        )
        await self.consumer.start()
        partitions = await topic_partitions(self.bootstrap, self.topics)
        self.consumer.assign(partitions)
        await self.consumer.seek_to_end(*partitions)
        for tp in partitions:  # resolve the end offsets now, not lazily at the first fetch
            await self.consumer.position(tp)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.consumer:
            await self.consumer.stop()

    async def drain(
        self, seconds: float, keep: Callable[[Any], bool] = lambda r: True
    ) -> list[Any]:
        """Everything kept that arrives within `seconds` (to prove nothing more comes)."""
        assert self.consumer is not None
        found: list[Any] = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            batches = await self.consumer.getmany(timeout_ms=200)
            found += [r for records in batches.values() for r in records if keep(r)]
        return found

    async def collect(
        self,
        until: Callable[[list[Any]], bool],
        timeout: float = 30.0,
        keep: Callable[[Any], bool] = lambda r: True,
    ) -> list[Any]:
        """Records kept by `keep`, read until `until(records)` holds; fails on timeout."""
        assert self.consumer is not None
        found: list[Any] = []
        deadline = time.monotonic() + timeout
        while not until(found):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s with {len(found)} records")
            batches = await self.consumer.getmany(timeout_ms=200)
            found += [r for records in batches.values() for r in records if keep(r)]
        return found


async def wait_for(db: Any, query: str, *args: Any, timeout: float = 30) -> None:
    """Poll the database until `query` returns something true."""
    deadline = time.monotonic() + timeout
    while not await db.fetchval(query, *args):
        assert time.monotonic() < deadline, f"timed out waiting for: {query} {args}"
        await asyncio.sleep(0.1)


async def outbox_drained(db: Any, schema: str) -> None:
    """Wait until a service's outbox is empty: everything it committed has been published."""
    await wait_for(db, f"SELECT count(*) = 0 FROM {schema}.outbox")


async def http_status(url: str) -> int:
    async with httpx.AsyncClient() as client:
        return (await client.get(url, timeout=5)).status_code


def of_tenant(tenant: str) -> Callable[[Any], bool]:
    def keep(record: Any) -> bool:
        try:
            return json.loads(record.value).get("tenantid") == tenant
        except ValueError:
            return False

    return keep


@dataclass
class ServiceProcess:
    """One service run as its own process, exactly as operators run it."""

    name: str
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    log: Path | None = None
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log = self.log or Path(
            REPO_ROOT / ".stack" / "test-logs" / f"{self.name}-{self.port}.log"
        )
        self.log.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "LOG_LEVEL": "INFO", **self.env, "HTTP_PORT": str(self.port)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", f"services.{self.name}"],
            cwd=REPO_ROOT,
            env=env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )

    async def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient() as client:
            while time.monotonic() < deadline:
                assert self.process and self.process.poll() is None, self.tail()
                try:
                    if (await client.get(f"{self.url}/readyz", timeout=2)).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
        raise AssertionError(f"{self.name} not ready in {timeout}s\n{self.tail()}")

    async def wait_assigned(self, timeout: float = 60.0) -> None:
        """Wait until the service's consumer group is stable with every partition assigned."""
        from aiokafka.admin import AIOKafkaAdminClient

        group = self.env["CONSUMER_GROUP"]
        admin = AIOKafkaAdminClient(bootstrap_servers=self.env["KAFKA_BOOTSTRAP_SERVERS"])
        await admin.start()
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                (response,) = await admin.describe_consumer_groups([group])
                _, _, state, _, _, members = response.groups[0]
                if state == "Stable" and members:
                    return
                await asyncio.sleep(0.2)
        finally:
            await admin.close()
        raise AssertionError(f"{self.name}: consumer group {group} not stable in {timeout}s")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode if self.process else None

    def tail(self, lines: int = 40) -> str:
        if not self.log or not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


async def fresh_group(bootstrap: str, service: str, prefix: str) -> str:
    """A new consumer group for `service`, with committed offsets at the topics' current ends.

    The service starts exactly there: no history to replay, and nothing published afterwards is
    skipped. "latest" would not do: it is resolved lazily, per partition, by whichever replica
    first owns it, so records published before that (or a batch whose commit a rebalance
    refused) would be skipped for good."""
    group = unique(prefix)
    await commit_end_offsets(bootstrap, group, service)
    return group


async def topic_partitions(bootstrap: str, topics: Iterable[str]) -> list[TopicPartition]:
    """Every partition of `topics`, from the admin client: a fresh consumer's metadata can be
    partial, and a reader pinned on part of a topic silently misses the rest."""
    from aiokafka.admin import AIOKafkaAdminClient

    wanted = list(topics)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(wanted)
    finally:
        await admin.close()
    partitions = [
        TopicPartition(d["topic"], p["partition"]) for d in described for p in d["partitions"]
    ]
    assert {tp.topic for tp in partitions} == set(wanted), f"topics missing: {wanted}"
    return partitions


async def commit_end_offsets(bootstrap: str, group: str, service: str) -> None:
    """Commit the current end of every partition of `service`'s topics for `group`."""
    topics = read_by(service)
    partitions = await topic_partitions(bootstrap, topics)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        ends = await consumer.end_offsets(partitions)
        consumer.assign(partitions)
        await consumer.commit(dict(ends))
    finally:
        await consumer.stop()


class SmtpInbox:
    """An aiosmtpd handler that keeps every message it accepts (a real SMTP server for tests)."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"

    def to(self, address: str) -> list[Message]:
        return [m for m in self.messages if address in m["To"]]


class running:
    """Start services as processes, wait until ready, stop them (SIGTERM) on exit."""

    def __init__(
        self, names: Iterable[str], env: dict[str, str], groups: Mapping[str, str] | None = None
    ) -> None:
        """`groups`: a consumer group per service (default: the service's own)."""
        chosen = {name: {"CONSUMER_GROUP": group} for name, group in (groups or {}).items()}
        self.procs = {name: ServiceProcess(name, {**env, **chosen.get(name, {})}) for name in names}

    async def __aenter__(self) -> dict[str, ServiceProcess]:
        for proc in self.procs.values():
            proc.start()
        try:
            await asyncio.gather(*(p.wait_ready() for p in self.procs.values()))
        except BaseException:
            await self.__aexit__()
            raise
        return self.procs

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.gather(*(asyncio.to_thread(p.stop) for p in self.procs.values()))
