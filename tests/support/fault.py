"""The fault suites' tools: their own stack's address, services under fault, clients that outlive
broker outages, consumer lag, readiness and memory samples, dead letters, and the figures of a
run in `.stack/test-results/reliability.json`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import RecordMetadata

from services.registry import NAMES
from shared.contract.topics import INGRESS_TOPICS, TOPICS, dead_letter_topic, read_by
from shared.local.kafka import end_offsets, topic_partitions
from shared.local.processes import ServiceProcess, Services
from shared.local.stack import REPO_ROOT, StackConfig

RESULTS = REPO_ROOT / ".stack" / "test-results" / "reliability.json"
Sendable = tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]] | None]
DEAD_LETTER_TOPICS = tuple(dead_letter_topic(name) for name in NAMES)
# Each ingress topic's dead-letter topic: its first reader's (the service that owns the topic).
INGRESS_DLQ = {t: dead_letter_topic(TOPICS[t].consumers[0]) for t in INGRESS_TOPICS}


@dataclass(frozen=True)
class FaultStack:
    """The fault layer's own Kafka and PostgreSQL (the `fault_stack` fixture)."""

    cfg: StackConfig

    @property
    def bootstrap(self) -> str:
        return self.cfg.bootstrap_servers

    @property
    def database_url(self) -> str:
        return self.cfg.database_url

    def service_env(self, database_url: str | None = None, **extra: str) -> dict[str, str]:
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "DATABASE_URL": database_url or self.database_url,
            "LOG_LEVEL": "INFO",
            **extra,
        }


def fault_services(suite: str) -> Services:
    """A suite's service processes, logging to a fresh `.stack/fault/service-logs/<suite>`;
    they get longer to be ready than elsewhere, as a fault may have just hit them."""
    path = REPO_ROOT / ".stack" / "fault" / "service-logs" / suite
    if path.exists():
        shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
    return Services(path, ready_timeout=90)


# ---------------------------------------------------------------- clients that outlive outages


class Publisher:
    """A producer that outlives broker outages: a failed chunk is sent again after a pause.

    A retry may put a record on the topic twice; valid events carry the same id both times (the
    services' inboxes drop the copy), which is part of what the suites prove.
    """

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.producer: AIOKafkaProducer | None = None
        self.sent = 0
        self.retried_chunks = 0

    async def _ensure(self) -> AIOKafkaProducer:
        if self.producer is None:
            producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap,
                acks="all",
                enable_idempotence=True,
                linger_ms=5,
                max_request_size=2 * 1024 * 1024,
                request_timeout_ms=10_000,
            )
            await producer.start()
            self.producer = producer
        return self.producer

    async def send(
        self, records: Sequence[Sendable], deadline: float = 180.0
    ) -> list[RecordMetadata]:
        """Publish `records` (topic, key, value, headers); returns their metadata, in order."""
        give_up = time.monotonic() + deadline
        while True:
            try:
                producer = await self._ensure()
                futures = [
                    await producer.send(topic, value, key=key, headers=headers)
                    for topic, key, value, headers in records
                ]
                results = list(await asyncio.gather(*futures))
                self.sent += len(records)
                return results
            except Exception:
                if time.monotonic() > give_up:
                    raise
                self.retried_chunks += 1
                await self.close()
                await asyncio.sleep(1.0)

    async def close(self) -> None:
        if self.producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.producer.stop(), 15)
            self.producer = None


class Follower:
    """Reads topics from their start (offsets pinned by the caller), surviving broker outages."""

    def __init__(self, bootstrap: str, topics: Iterable[str]) -> None:
        self.bootstrap = bootstrap
        self.topics = tuple(topics)
        self.positions: dict[TopicPartition, int] = {}
        self.consumer: AIOKafkaConsumer | None = None

    async def _ensure(self) -> AIOKafkaConsumer:
        if self.consumer is None:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap,
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                request_timeout_ms=10_000,
            )
            await consumer.start()
            partitions = await topic_partitions(self.bootstrap, self.topics)
            consumer.assign(partitions)
            for tp in partitions:
                if tp in self.positions:
                    consumer.seek(tp, self.positions[tp])
                else:
                    await consumer.seek_to_beginning(tp)
            self.consumer = consumer
        return self.consumer

    async def poll(self, timeout_ms: int = 200) -> list[Any]:
        try:
            consumer = await self._ensure()
            batches = await consumer.getmany(timeout_ms=timeout_ms, max_records=2000)
        except Exception:
            await self.close()
            await asyncio.sleep(1.0)
            return []
        records = [r for rs in batches.values() for r in rs]
        for r in records:
            tp = TopicPartition(r.topic, r.partition)
            self.positions[tp] = max(self.positions.get(tp, 0), r.offset + 1)
        return records

    async def close(self) -> None:
        if self.consumer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.consumer.stop(), 10)
            self.consumer = None


# ---------------------------------------------------------------- lag, readiness, memory


def group_topics() -> dict[str, tuple[str, ...]]:
    """Each service's consumer group (the default: its name) and the topics it reads."""
    return {s: read_by(s) for s in NAMES}


async def consumer_lag(bootstrap: str, groups: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """Records not yet committed by each group: end offset minus committed offset, summed."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await admin.start()
    await consumer.start()
    await asyncio.sleep(0)  # aiokafka: let its coordinator task start, or stop() raises
    try:
        lag: dict[str, int] = {}
        for group, topics in groups.items():
            partitions = await topic_partitions(bootstrap, topics)
            ends = await consumer.end_offsets(partitions)
            committed = await admin.list_consumer_group_offsets(group)
            lag[group] = sum(
                max(0, end - (committed[tp].offset if tp in committed else 0))
                for tp, end in ends.items()
            )
        return lag
    finally:
        await consumer.stop()
        await admin.close()


async def wait_lag_zero(
    bootstrap: str, groups: Mapping[str, Sequence[str]], timeout: float = 120.0
) -> tuple[dict[str, int], float]:
    """Wait until every group has committed everything; returns the lag and seconds waited."""
    started = time.monotonic()
    lag: dict[str, int] = {}
    while time.monotonic() - started < timeout:
        with contextlib.suppress(Exception):
            lag = await consumer_lag(bootstrap, groups)
            if not any(lag.values()):
                return lag, time.monotonic() - started
        await asyncio.sleep(1.0)
    return lag, time.monotonic() - started


@dataclass
class ReadinessSample:
    at: float
    label: str
    pid: int | None
    status: int  # 0: no answer


class Background:
    """A sampler running as a task from `start()` to `stop()`; subclasses say what `_run` does."""

    _task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        raise NotImplementedError

    def start(self) -> Self:
        self._task = asyncio.create_task(self._run())
        return self

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


@dataclass
class ReadinessProbe(Background):
    """Polls /readyz of every service in the background and keeps every answer."""

    services: Services
    every: float = 0.25
    samples: list[ReadinessSample] = field(default_factory=list)

    async def _probe(self, client: httpx.AsyncClient, label: str, proc: ServiceProcess) -> None:
        if proc.process is None or proc.process.poll() is not None:
            return
        pid = proc.process.pid
        try:
            code = (await client.get(f"{proc.url}/readyz")).status_code
        except httpx.HTTPError:
            code = 0
        self.samples.append(ReadinessSample(time.monotonic(), label, pid, code))

    async def _run(self) -> None:
        """Every service at once, so a stopped one (SIGSTOP) does not delay the others."""
        async with httpx.AsyncClient(timeout=6.0) as client:
            while True:
                await asyncio.gather(
                    *(self._probe(client, k, p) for k, p in list(self.services.procs.items()))
                )
                await asyncio.sleep(self.every)

    def between(self, start: float, end: float) -> list[ReadinessSample]:
        return [s for s in self.samples if start <= s.at <= end]


async def metric_total(url: str, name: str) -> float | None:
    """The sum of a Prometheus metric's samples on a service's /metrics (None: no answer)."""
    try:
        async with httpx.AsyncClient(timeout=5.0) as client:
            text = (await client.get(f"{url}/metrics")).text
    except httpx.HTTPError:
        return None
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith((f"{name} ", f"{name}{{"))
    )


def rss_bytes(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


# ---------------------------------------------------------------- results


def record_results(section: str, figures: dict[str, Any]) -> dict[str, Any]:
    """Merge one suite's figures into `.stack/test-results/reliability.json` and print them."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    try:
        data = json.loads(RESULTS.read_text())
    except (FileNotFoundError, ValueError):
        data = {}
    figures = {"date": datetime.now(UTC).isoformat(timespec="seconds"), **figures}
    data[section] = figures
    tmp = RESULTS.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    tmp.replace(RESULTS)
    print(f"\n{section}: " + json.dumps(figures, indent=2))
    return figures


# ---------------------------------------------------------------- dead letters


@dataclass
class Invalid:
    """A record that breaks the contract, and the dead-letter codes that would answer it."""

    topic: str
    key: bytes | None
    value: bytes | None
    codes: frozenset[str]
    headers: list[tuple[str, bytes]] | None = None
    where: tuple[str, int, int] | None = None  # (topic, partition, offset) once published
    reason_says: tuple[str, ...] = ()  # words the dead letter's reason must contain


async def read_dead_letters(
    bootstrap: str, start: dict[TopicPartition, int], timeout: float = 60.0
) -> dict[tuple[str, int, int], list[dict[str, str]]]:
    """Every dead letter between `start` and the topics' current ends, by the (topic, partition,
    offset) of the record it answers: its headers, `_dlq` (where it was written), `_key` (the
    answered record's key) and, when that record was a readable event, `_tenant` and `_id`."""
    ends = await end_offsets(bootstrap, {tp.topic for tp in start})
    follower = Follower(bootstrap, {tp.topic for tp in start})
    follower.positions = dict(start)
    found: dict[tuple[str, int, int], list[dict[str, str]]] = {}
    deadline = time.monotonic() + timeout
    try:
        while any(follower.positions.get(tp, start.get(tp, 0)) < end for tp, end in ends.items()):
            assert time.monotonic() < deadline, "dead-letter topics not read to their end"
            for r in await follower.poll(timeout_ms=500):
                headers = {k: (v or b"").decode("utf-8", "replace") for k, v in r.headers}
                where = (
                    headers["dlq-topic"],
                    int(headers["dlq-partition"]),
                    int(headers["dlq-offset"]),
                )
                key = (r.key or b"").decode("utf-8", "replace")
                letter = {**headers, "_dlq": r.topic, "_key": key, **_event_of(r.value)}
                found.setdefault(where, []).append(letter)
    finally:
        await follower.close()
    return found


def _event_of(value: bytes | None) -> dict[str, str]:
    """The tenant and id of a dead-lettered record, if it is a JSON event that says them."""
    try:
        event = json.loads(value or b"")
    except (ValueError, RecursionError):
        return {}
    if not isinstance(event, dict):
        return {}
    return {"_tenant": str(event.get("tenantid", "")), "_id": str(event.get("id", ""))}


def dead_letter_summary(
    invalid: Sequence[Invalid], answers: dict[tuple[str, int, int], list[dict[str, str]]]
) -> tuple[dict[str, int], dict[str, Any]]:
    """How the invalid records were answered in their dead-letter topic.

    Two copies with the same `dlq-time` are one answer relayed twice (the outbox relay is at
    least once after a broker failure); copies with different times mean the record was
    processed twice, by two transactions. `valid_refused <dlq>:<code>` counts dead letters of
    records that were not invalid (a valid event refused by a service's domain)."""
    unanswered = wrong_code = no_reason = reason_unclear = relayed_twice = written_twice = 0
    twice: list[Any] = []
    unclear: list[Any] = []
    for record in invalid:
        assert record.where is not None, "an invalid record was never published"
        letters = [
            a for a in answers.get(record.where, []) if a["_dlq"] == INGRESS_DLQ[record.topic]
        ]
        if not letters:
            unanswered += 1
            continue
        wrong_code += any(a["dlq-reason-code"] not in record.codes for a in letters)
        no_reason += any(not a.get("dlq-reason") for a in letters)
        vague = [
            a for a in letters if not all(w in a.get("dlq-reason", "") for w in record.reason_says)
        ]
        reason_unclear += bool(vague)
        if vague and len(unclear) < 5:
            unclear.append({"expected_words": record.reason_says, "reason": vague[0]["dlq-reason"]})
        times = {a["dlq-time"] for a in letters}
        relayed_twice += len(letters) > len(times)
        written_twice += len(times) > 1
        if len(times) > 1:
            twice.append([{k: a[k] for k in _LETTER_FIELDS} for a in letters])
    notifications = dead_letter_topic("notifications")
    refused = Counter(
        f"{a['_dlq']}:{a['dlq-reason-code']}" for a in valid_refused(invalid, answers)
    )
    summary = {
        "invalid_records": len(invalid),
        "unanswered": unanswered,
        "wrong_reason_code": wrong_code,
        "without_reason": no_reason,
        "reason_lacks_its_words": reason_unclear,
        "relayed_twice_same_answer": relayed_twice,
        "written_twice": written_twice,
        "also_answered_by_notifications": sum(
            any(a["_dlq"] == notifications for a in answers.get(r.where, ()))  # type: ignore[arg-type]
            for r in invalid
        ),
        **{f"valid_refused {k}": n for k, n in sorted(refused.items())},
    }
    return summary, {"dead_letter_written_twice": twice[:5], "dead_letter_reason_unclear": unclear}


_LETTER_FIELDS = (
    "dlq-service",
    "dlq-topic",
    "dlq-partition",
    "dlq-offset",
    "dlq-reason-code",
    "dlq-time",
)


def valid_refused(
    invalid: Sequence[Invalid], answers: dict[tuple[str, int, int], list[dict[str, str]]]
) -> list[dict[str, str]]:
    """The dead letters that answer no invalid record: valid events a service refused."""
    invalid_at = {r.where for r in invalid}
    return [a for where, letters in answers.items() if where not in invalid_at for a in letters]


def refused_events(
    letters: dict[tuple[str, int, int], list[dict[str, str]]], valid: set[tuple[str, str]]
) -> set[tuple[str, str]]:
    """The valid events (tenant, id) answered by a dead letter: refused by a service's domain,
    they leave no inbox row (a replay of the dead letter, once the cause is fixed, is applied)."""
    answered = {(a.get("_tenant", ""), a.get("_id", "")) for ls in letters.values() for a in ls}
    return valid & answered
