"""The fault layer's own infrastructure and the tools its suites share.

`fault_stack` starts a dedicated Kafka and PostgreSQL (the local stack under `.stack/fault`, on
free ports, no mail catcher) once per session, so the suites can kill the broker and restart the
database without touching the stack other tests use; it stops them at the end. The helpers below
run services, publish through broker outages, sample readiness and memory, measure consumer lag,
and record the figures of a run in `.stack/test-results/reliability.json`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import RecordMetadata

from services.registry import NAMES
from shared.contract.topics import read_by
from shared.local.sinks import SmtpSink
from shared.local.stack import REPO_ROOT, StackConfig, down, start_infra, status
from tests.support import ServiceProcess, free_port, topic_partitions

SERVICES = NAMES
RESULTS = REPO_ROOT / ".stack" / "test-results" / "reliability.json"
Record = tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]] | None]


@dataclass(frozen=True)
class FaultStack:
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


def _quiet(_: str) -> None:
    return None


@pytest.fixture(scope="session")
async def fault_stack() -> AsyncIterator[FaultStack]:
    """Kafka and PostgreSQL of the fault layer alone, fresh for every session."""
    cfg = StackConfig(
        home=REPO_ROOT / ".stack" / "fault",
        kafka_port=free_port(),
        controller_port=free_port(),
        pg_port=free_port(),
        with_mailcatcher=False,
    )
    if any(c.running for c in status(cfg)):  # a run that was interrupted left it up
        down(cfg, on_step=_quiet)
    for stale in ("kafka", "pgdata", "run", "stack.json"):  # fresh data: ports change each run
        path = cfg.home / stale
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    try:
        await start_infra(cfg, provision=True, on_step=_quiet)
        yield FaultStack(cfg)
    finally:
        down(cfg, on_step=_quiet)


@pytest.fixture(scope="session")
async def fault_db(fault_stack: FaultStack) -> AsyncIterator[asyncpg.Pool]:
    # min_size=0: no reconnect attempts (and warnings) of its own while PostgreSQL restarts
    pool = await asyncpg.create_pool(fault_stack.database_url, min_size=0, max_size=4)
    assert pool is not None
    yield pool
    await pool.close()


@pytest.fixture(scope="module")
def smtp_sink() -> Iterator[SmtpSink]:
    """The SMTP server notifications delivers to; it keeps every message it accepts."""
    sink = SmtpSink().start()
    yield sink
    sink.stop()


# ---------------------------------------------------------------- services


class Services:
    """Named service processes of one suite (e.g. `matching-1`, `matching-2`)."""

    def __init__(self, log_dir: Path) -> None:
        self.procs: dict[str, ServiceProcess] = {}
        self.log_dir = log_dir

    def add(self, label: str, service: str, env: dict[str, str]) -> ServiceProcess:
        proc = ServiceProcess(service, dict(env))
        proc.log = self.log_dir / f"{label}.log"
        self.procs[label] = proc
        return proc

    async def start(self, *labels: str) -> None:
        chosen = [self.procs[label] for label in labels or self.procs]
        for proc in chosen:
            proc.start()
        await asyncio.gather(*(p.wait_ready(timeout=90) for p in chosen))

    async def restart(self, label: str) -> None:
        proc = self.procs[label]
        proc.start()
        await proc.wait_ready(timeout=90)

    def __getitem__(self, label: str) -> ServiceProcess:
        return self.procs[label]

    def pids(self) -> dict[str, int | None]:
        return {k: p.process.pid if p.process else None for k, p in self.procs.items()}

    def alive(self) -> dict[str, bool]:
        return {k: bool(p.process and p.process.poll() is None) for k, p in self.procs.items()}

    async def stop_all(self) -> None:
        await asyncio.gather(*(asyncio.to_thread(p.stop) for p in self.procs.values()))


def log_dir(name: str) -> Path:
    path = REPO_ROOT / ".stack" / "fault" / "service-logs" / name
    if path.exists():
        shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
    return path


# ---------------------------------------------------------------- publishing


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
        self, records: Sequence[Record], deadline: float = 180.0
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
    return {s: read_by(s) for s in SERVICES}


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


@dataclass
class ReadinessProbe:
    """Polls /readyz of every service in the background and keeps every answer."""

    services: Services
    every: float = 0.25
    samples: list[ReadinessSample] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

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

    def start(self) -> ReadinessProbe:
        self._task = asyncio.create_task(self._run())
        return self

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def between(self, start: float, end: float) -> list[ReadinessSample]:
        return [s for s in self.samples if start <= s.at <= end]


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


# ---------------------------------------------------------------- a mixed stream and its oracle

HR_SOURCE = "hr/fault-suite"
APP_SOURCE = "app/fault-suite"
INGRESS_DLQ = {
    "mentor-registered": "dlq.profiles",
    "mentee-registered": "dlq.profiles",
    "person-offboarded": "dlq.profiles",
    "match-responded": "dlq.matching",
    "session-completed": "dlq.matching",
    "program-configured": "dlq.matching",
    "cohort-match-requested": "dlq.matching",
}


@dataclass
class Invalid:
    """A record that breaks the contract, and the dead-letter codes that would answer it."""

    topic: str
    key: bytes | None
    value: bytes | None
    codes: frozenset[str]
    headers: list[tuple[str, bytes]] | None = None
    where: tuple[str, int, int] | None = None  # (topic, partition, offset) once published


@dataclass
class Planned:
    record: Record
    valid: tuple[str, str] | None = None  # (tenant, event id) of a valid event
    invalid: Invalid | None = None


def _hr_event(
    tenant: str, type_: str, data: dict[str, Any], time_: datetime, event_id: str
) -> bytes:
    return json.dumps(
        {
            "specversion": "1.0",
            "id": event_id,
            "source": HR_SOURCE,
            "type": type_,
            "time": time_.isoformat(),
            "datacontenttype": "application/json",
            "tenantid": tenant,
            "data": data,
        }
    ).encode()


class World:
    """A seeded population of several tenants and programs: the HR stream that builds it, the
    app traffic that answers its proposals, and what the end state must therefore be.

    Every choice is drawn from one seeded generator, so a failing run can be replayed."""

    def __init__(
        self,
        prefix: str,
        *,
        tenants: int,
        programs: int,
        mentors: int,
        mentees: int,
        seed: int,
        decline: float = 0.15,
        ignore: float = 0.1,
        session: float = 0.4,
    ) -> None:
        from shared.local.simulation import Population

        self.rng = random.Random(seed)
        self.tenants = [f"{prefix}-t{i}" for i in range(tenants)]
        self.populations = {
            t: Population(t, programs=programs, seed=seed * 100 + i, source=HR_SOURCE)
            for i, t in enumerate(self.tenants)
        }
        self.decline, self.ignore, self.session = decline, ignore, session
        # people: (tenant, person) -> (role, data as last registered)
        self.people: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
        # Half the mentors register early (in the first 30% of the stream), everyone else at
        # random moments; tenants interleave.
        drawn: list[tuple[float, str, str, dict[str, Any]]] = []
        for t, pop in self.populations.items():
            for i in range(mentors):
                early = 0.3 if i < mentors // 2 else 1.0
                drawn.append((self.rng.random() * early, t, "mentor", pop.mentor(i)))
            drawn += [(self.rng.random(), t, "mentee", pop.mentee(i)) for i in range(mentees)]
        drawn.sort(key=lambda x: x[0])
        self._to_register = [(t, role, data) for _, t, role, data in drawn]
        self.enrolments: dict[tuple[str, str, str], tuple[str, str]] = {}  # -> (role, event id)
        self.offboarded: set[tuple[str, str]] = set()
        self.valid_hr: set[tuple[str, str]] = set()
        self.valid_app: set[tuple[str, str]] = set()
        self.invalid: list[Invalid] = []
        self._registered: list[tuple[str, str]] = []
        self._ghosts = 0
        # app side, filled by `react`
        self.proposals: dict[str, dict[str, Any]] = {}  # match id -> proposal data + tenant
        self.proposal_event_ids: dict[str, set[str]] = {}
        self.confirmed: set[str] = set()
        self.ended: dict[str, str] = {}
        self.answers: dict[str, list[tuple[str, str]]] = {}  # match id -> (person, decision)
        self.sessions: dict[str, int] = {}
        self.last_proposal_at = time.monotonic()

    # ---------------------------------------------------------------- HR stream

    def _event(self, tenant: str, type_: str, data: dict[str, Any]) -> tuple[bytes, str]:
        pop = self.populations[tenant]
        pop.clock += timedelta(milliseconds=1)
        event_id = str(uuid.UUID(int=self.rng.getrandbits(128)))
        return _hr_event(tenant, type_, data, pop.clock, event_id), event_id

    def _registration(self, tenant: str, role: str, data: dict[str, Any]) -> Planned:
        topic = f"{role}-registered"
        value, event_id = self._event(tenant, topic, data)
        key = (tenant, data["program_id"], data["person_id"])
        self.enrolments[key] = (role, event_id)
        self.people[(tenant, data["person_id"])] = (role, data)
        self.valid_hr.add((tenant, event_id))
        return Planned((topic, data["person_id"].encode(), value, None), valid=(tenant, event_id))

    def _update(self) -> Planned:
        tenant, person = self.rng.choice(self._registered)
        role, data = self.people[(tenant, person)]
        data = dict(data)
        first = self.rng.choice(["Ada", "Grace", "Alan", "Nina", "Omar", "Chloé", "Kofi"])
        data["display_name"] = f"{first} {self.rng.choice(['Martin', 'Müller', 'Silva'])}"
        data["department"] = self.rng.choice(["engineering", "sales", "hr", "product"])
        low, high = (5, 10) if role == "mentor" else (1, 6)
        data["seniority"] = self.rng.randint(low, high)
        return self._registration(tenant, role, data)

    def _offboarding(self) -> Planned:
        tenant, person = self._registered.pop(self.rng.randrange(len(self._registered)))
        value, event_id = self._event(tenant, "person-offboarded", {"person_id": person})
        self.offboarded.add((tenant, person))
        for key in [k for k in self.enrolments if k[0] == tenant and k[2] == person]:
            del self.enrolments[key]
        self.valid_hr.add((tenant, event_id))
        return Planned(
            ("person-offboarded", person.encode(), value, None), valid=(tenant, event_id)
        )

    def _invalid(self) -> Planned:
        tenant = self.rng.choice(self.tenants)
        self._ghosts += 1
        ghost = f"ghost-{self._ghosts:06d}"
        person = {
            "person_id": ghost,
            "program_id": "program-1",
            "display_name": "Ghost",
            "email": f"{ghost}@x.example",
            "languages": ["en"],
            "timezone": "Europe/Paris",
            "goals": [{"topic": "python", "priority": 1}],
        }
        kind = self.rng.randrange(9)
        topic, key, codes = "mentee-registered", ghost.encode(), frozenset({"invalid_field"})
        if kind == 0:
            value: bytes | None = b'{"specversion": "1.0", "id": ' + ghost.encode()
            codes = frozenset({"not_json"})
        elif kind == 1:
            del person["email"]
            value = self._event(tenant, topic, person)[0]
            codes = frozenset({"missing_field"})
        elif kind == 2:
            person["languages"] = ["xx"]
            value = self._event(tenant, topic, person)[0]
        elif kind == 3:
            value = self._event(tenant, "mentor-registered", person)[0]
            codes = frozenset({"type_mismatch"})
        elif kind == 4:
            value = self._event(tenant, topic, person)[0]
            key, codes = b"somebody-else", frozenset({"key_mismatch"})
        elif kind == 5:
            value = b'{"specversion":"1.0","id":"\xff\xfe' + ghost.encode() + b'"}'
            codes = frozenset({"invalid_utf8"})
        elif kind == 6:
            topic = "match-responded"
            answer = {"match_id": ghost, "person_id": ghost, "decision": "maybe"}
            value, key = self._event(tenant, topic, answer)[0], ghost.encode()
        elif kind == 7:
            topic = "session-completed"
            session = {"match_id": ghost, "session_id": ghost, "duration_minutes": 0}
            value, key = self._event(tenant, topic, session)[0], ghost.encode()
        else:
            value, codes = None, frozenset({"empty"})
        invalid = Invalid(topic, key, value, codes)
        self.invalid.append(invalid)
        return Planned((topic, key, value, None), invalid=invalid)

    def program_configs(self) -> list[Planned]:
        """Every program in continuous mode with its default weights, said explicitly."""
        planned = []
        for tenant, pop in self.populations.items():
            for program in pop.programs:
                value, event_id = self._event(
                    tenant,
                    "program-configured",
                    {"program_id": program, "mode": "continuous", "candidates": 20},
                )
                value = value.replace(HR_SOURCE.encode(), APP_SOURCE.encode(), 1)
                self.valid_app.add((tenant, event_id))
                planned.append(
                    Planned(
                        ("program-configured", program.encode(), value, None), (tenant, event_id)
                    )
                )
        return planned

    def hr_stream(
        self, updates: int, offboardings: int, invalid: int, register_by: float = 1.0
    ) -> list[Planned]:
        """Registrations, updates, offboardings and invalid records, spread evenly: each pick is
        weighted by what is left of each kind (updates and offboardings need someone enrolled).

        With `register_by` < 1, everyone has registered within that share of the stream and the
        rest only changes a population of fixed size (the steady state of a load test)."""
        queue = list(self._to_register)
        others = {"update": updates, "offboard": offboardings, "invalid": invalid}
        early = {k: int(n * register_by) for k, n in others.items()}
        out: list[Planned] = []
        for left in ({"register": len(queue), **early}, {k: others[k] - early[k] for k in others}):
            while any(left.values()):
                kinds = [k for k, n in left.items() if n > 0]
                if not self._registered:
                    kinds = [k for k in kinds if k not in ("update", "offboard")] or ["register"]
                kind = self.rng.choices(kinds, [left[k] for k in kinds])[0]
                left[kind] -= 1
                if kind == "register":
                    tenant, role, data = queue.pop(0)
                    out.append(self._registration(tenant, role, data))
                    self._registered.append((tenant, data["person_id"]))
                elif kind == "update":
                    out.append(self._update())
                elif kind == "offboard":
                    out.append(self._offboarding())
                else:
                    out.append(self._invalid())
        return out

    # ---------------------------------------------------------------- app traffic

    def _app_event(self, tenant: str, type_: str, data: dict[str, Any], key: str) -> Record:
        value, event_id = self._event(tenant, type_, data)
        value = value.replace(HR_SOURCE.encode(), APP_SOURCE.encode(), 1)
        self.valid_app.add((tenant, event_id))
        return (type_, key.encode(), value, None)

    def react(self, record: Any) -> list[Record]:
        """What the mentoring apps answer to a record of match-proposed/-confirmed/-ended."""
        try:
            event = json.loads(record.value)
        except ValueError:
            return []
        tenant = event.get("tenantid")
        if tenant not in self.populations:
            return []
        data = event["data"]
        match_id = data["match_id"]
        out: list[Record] = []
        if record.topic == "match-proposed":
            self.proposal_event_ids.setdefault(match_id, set()).add(event["id"])
            if match_id in self.proposals:
                return []  # a republished copy
            self.proposals[match_id] = {**data, "tenant": tenant}
            self.last_proposal_at = time.monotonic()
            draw = self.rng.random()
            if draw < self.ignore:
                return []
            if draw < self.ignore + self.decline:
                answers = [(data["mentee_id"], "declined")]
            else:
                answers = [(data["mentee_id"], "accepted"), (data["mentor_id"], "accepted")]
            for person, decision in answers:
                self.answers.setdefault(match_id, []).append((person, decision))
                out.append(
                    self._app_event(
                        tenant,
                        "match-responded",
                        {"match_id": match_id, "person_id": person, "decision": decision},
                        match_id,
                    )
                )
        elif record.topic == "match-confirmed":
            if match_id in self.confirmed:
                return []
            self.confirmed.add(match_id)
            if self.rng.random() < self.session:
                self.sessions[match_id] = self.sessions.get(match_id, 0) + 1
                session = {
                    "match_id": match_id,
                    "session_id": f"s-{match_id}",
                    "duration_minutes": self.rng.randint(20, 90),
                    "mentor_rating": self.rng.randint(1, 5),
                    "mentee_rating": self.rng.randint(1, 5),
                }
                out.append(self._app_event(tenant, "session-completed", session, match_id))
        elif record.topic == "match-ended":
            self.ended.setdefault(match_id, data["outcome"])
        return out

    def touches_offboarded(self, match: dict[str, Any]) -> bool:
        tenant = match["tenant_id"] if "tenant_id" in match else match["tenant"]
        return bool({(tenant, match["mentee_id"]), (tenant, match["mentor_id"])} & self.offboarded)


class Responder:
    """The mentoring apps: follow proposals and confirmations, answer them as `World.react` says."""

    TOPICS = ("match-proposed", "match-confirmed", "match-ended")

    def __init__(self, world: World, bootstrap: str, start: dict[TopicPartition, int]) -> None:
        self.world = world
        self.follower = Follower(bootstrap, self.TOPICS)
        self.follower.positions = dict(start)
        self.publisher = Publisher(bootstrap)
        self.published = 0
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    async def _run(self) -> None:
        while not self._stop.is_set():
            out: list[Record] = []
            for record in await self.follower.poll():
                out += self.world.react(record)
            if out:
                await self.publisher.send(out)
                self.published += len(out)

    def start(self) -> Responder:
        self._task = asyncio.create_task(self._run())
        return self

    async def stop(self) -> None:
        self._stop.set()
        if self._task:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 30)
        await self.follower.close()
        await self.publisher.close()


async def end_offsets(bootstrap: str, topics: Iterable[str]) -> dict[TopicPartition, int]:
    """Where each partition of `topics` ends now (readers start there to see only what follows)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    await asyncio.sleep(0)  # aiokafka: let its coordinator task start, or stop() raises
    try:
        return dict(await consumer.end_offsets(await topic_partitions(bootstrap, topics)))
    finally:
        await consumer.stop()


async def publish_paced(
    publisher: Publisher,
    planned: Sequence[Planned],
    rate: float,
    chunk: int = 50,
) -> float:
    """Publish at `rate` records per second (in chunks); fills in where invalid records landed.
    Returns the seconds it took."""
    started = time.monotonic()
    for i in range(0, len(planned), chunk):
        part = planned[i : i + chunk]
        metadata = await publisher.send([p.record for p in part])
        for p, meta in zip(part, metadata, strict=True):
            if p.invalid is not None:
                p.invalid.where = (meta.topic, meta.partition, meta.offset)
        ahead = started + (i + len(part)) / rate - time.monotonic()
        if ahead > 0:
            await asyncio.sleep(ahead)
    return time.monotonic() - started


async def read_dead_letters(
    bootstrap: str, start: dict[TopicPartition, int], timeout: float = 60.0
) -> dict[tuple[str, int, int], list[dict[str, str]]]:
    """Every dead letter between `start` and the topics' current ends, by the (topic, partition,
    offset) of the record it answers."""
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
                found.setdefault(where, []).append({**headers, "_dlq": r.topic})
    finally:
        await follower.close()
    return found


def dead_letter_summary(
    invalid: Sequence[Invalid], answers: dict[tuple[str, int, int], list[dict[str, str]]]
) -> tuple[dict[str, int], dict[str, Any]]:
    """How the invalid records were answered in their dead-letter topic.

    Two copies with the same `dlq-time` are one answer relayed twice (the outbox relay is at
    least once after a broker failure); copies with different times mean the record was
    processed twice, by two transactions."""
    unanswered = wrong_code = no_reason = relayed_twice = written_twice = 0
    twice: list[Any] = []
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
        times = {a["dlq-time"] for a in letters}
        relayed_twice += len(letters) > len(times)
        written_twice += len(times) > 1
        if len(times) > 1:
            twice.append(
                [
                    {
                        k: a[k]
                        for k in (
                            "dlq-service",
                            "dlq-topic",
                            "dlq-partition",
                            "dlq-offset",
                            "dlq-reason-code",
                            "dlq-time",
                        )
                    }
                    for a in letters
                ]
            )
    invalid_at = {r.where for r in invalid}
    refused = Counter(
        f"{a['_dlq']}:{a['dlq-reason-code']}"
        for where, letters in answers.items()
        if where not in invalid_at
        for a in letters
    )
    summary = {
        "invalid_records": len(invalid),
        "unanswered": unanswered,
        "wrong_reason_code": wrong_code,
        "without_reason": no_reason,
        "relayed_twice_same_answer": relayed_twice,
        "written_twice": written_twice,
        "also_answered_by_notifications": sum(
            any(a["_dlq"] == "dlq.notifications" for a in answers.get(r.where, ()))  # type: ignore[arg-type]
            for r in invalid
        ),
        **{f"valid_refused {k}": n for k, n in sorted(refused.items())},
    }
    return summary, {"dead_letter_written_twice": twice[:5]}
