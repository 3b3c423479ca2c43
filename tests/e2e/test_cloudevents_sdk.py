"""End to end with the official CloudEvents SDK: mentornet speaks the Kafka protocol binding.

The three services run as processes on the real broker and database. Every event the test
publishes is built with the SDK (`cloudevents.core.v1.event.CloudEvent`) and serialised by the
SDK's Kafka binding, in structured mode (`to_structured`) or binary mode (`to_binary`): every
ingress topic gets at least one valid event of each mode, and each one must take effect (seen
on the egress topics or in the database) and never reach a dead-letter topic.

Two cohort programs live a relationship each in seconds: configured (one per mode), two mentors
and two mentees registered (modes mixed), each cohort assigned, the proposals accepted (three
answers from apps, one from the answer page of a proposal email), a mentor paused and back, a
check-in and a stall, sessions, check-in answers, both relationships ended early, closing
feedback (one from the answer page), two people offboarded. One mentor's mail server refuses
every message, so notifications fails for good too.

Every record mentornet publishes for the tenant, on every topic the three services publish, is
then read as the binding says a receiver must: the mode is chosen by `content-type`
(`application/cloudevents...`: structured, anything else: binary). Each must be structured with
`content-type: application/cloudevents+json` exactly, carry no `ce_` header, be parsed alike by
the SDK's auto-detecting `from_kafka`, and the SDK's event must say what the JSON value says.
"""

from __future__ import annotations

import inspect
import json
import re
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer
from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings.kafka import (
    KafkaMessage,
    from_binary,
    from_kafka,
    from_structured,
    to_binary,
    to_structured,
)
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from dateutil.parser import isoparse

from services.registry import NAMES
from shared.contract.topics import INGRESS_TOPICS, dead_letter_topic, published_by
from shared.local.infra import Endpoints
from tests.support import ServiceProcess, SmtpSink, TopicReader, running, unique

pytestmark = pytest.mark.e2e

TENANT = unique("sdk")
PROGRAM_A, PROGRAM_B, PROGRAM_C = "sdk-a", "sdk-b", "sdk-c"
SECONDS = 1 / 86400
SOURCE = "apps/cloudevents-sdk-test"
FORMAT = JSONFormat()
STRUCTURED = "application/cloudevents+json"  # the only content type of mentornet's records
Mode = Literal["structured", "binary"]

# What the three services publish (the registry), and what this scenario must see of it.
EGRESS = tuple(
    dict.fromkeys(t for s in ("profiles", "matching", "notifications") for t in published_by(s))
)
EXPECTED = {
    "enrolment-updated",
    "enrolment-ended",
    "match-proposed",
    "match-confirmed",
    "match-ended",
    "relationship-stalled",
    "feedback-requested",
    "mentee-waiting",
    # weights-learned needs a program's outcomes by the dozen: tests/integration/test_learning.py
    # reads its records through the SDK the same way
    "weights-learned",
    "notification-delivered",
    "notification-failed",
    "match-responded",  # written by notifications' answer page
    "feedback-given",  # idem
}
SEEN_HERE = EXPECTED - {"weights-learned"}
DEAD_LETTERS = tuple(dead_letter_topic(name) for name in NAMES)
LINK = re.compile(r"https?://[^\s<>\"]+/answer\?[^\s<>\"]+")

MENTOR_A, MENTOR_B, MENTEE_A, MENTEE_B = "mentor-a", "mentor-b", "mentee-a", "mentee-b"


def address(person_id: str) -> str:
    return f"{person_id}@{TENANT}.example"


@pytest.fixture(scope="module")
async def system(
    service_env: dict[str, str], smtp: SmtpSink
) -> AsyncIterator[dict[str, ServiceProcess]]:
    env = {
        **service_env,
        **smtp.env(),
        "RELATIONSHIP_INTERVAL_SECONDS": "0.2",
        "DELIVERY_TENANTS": json.dumps([TENANT]),
        # mentor-b's mail server refuses everything (421): given up after the second attempt
        "DELIVERY_MAX_ATTEMPTS": "2",
        "RETRY_BASE_SECONDS": "0.1",
        "RETRY_MAX_SECONDS": "0.5",
    }
    smtp.refuse[address(MENTOR_B)] = 10_000
    async with running(NAMES, env) as procs:
        yield procs


# --- reading records ---------------------------------------------------------------------------


def header(record: Any, name: str) -> bytes | None:
    return next((v for k, v in record.headers or () if k == name), None)


def json_value(record: Any) -> dict[str, Any]:
    try:
        value = json.loads(record.value or b"")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def attribute(record: Any, name: str) -> str | None:
    """An attribute from the JSON value (structured), else from its `ce_` header (binary)."""
    found = json_value(record).get(name)
    if isinstance(found, str):
        return found
    raw = header(record, f"ce_{name}")
    return raw.decode("utf-8", "replace") if raw is not None else None


def from_mentornet(record: Any) -> bool:
    return (attribute(record, "source") or "").startswith("mentornet/")


def sdk_message(record: Any) -> KafkaMessage:
    headers = {k: v or b"" for k, v in record.headers or ()}
    return KafkaMessage(headers=headers, key=record.key, value=record.value or b"")


def read_as_the_binding_says(record: Any) -> tuple[Mode, BaseCloudEvent]:
    """The receiver's choice in the Kafka protocol binding: by `content-type` alone."""
    content_type = header(record, "content-type")
    message = sdk_message(record)
    if content_type is not None and content_type.decode().startswith("application/cloudevents"):
        return "structured", from_structured(message, FORMAT)
    return "binary", from_binary(message, FORMAT)


def format_problems(record: Any) -> list[str]:
    """What is wrong, by the binding, with a record mentornet published (empty: nothing)."""
    where = f"{record.topic} (partition {record.partition}, offset {record.offset})"
    names = [k for k, _ in record.headers or ()]
    problems = []
    content_type = header(record, "content-type")
    if content_type != STRUCTURED.encode():
        problems.append(
            f"{where}: content-type header is {content_type!r}, expected exactly {STRUCTURED!r} "
            "(without it a receiver following the binding reads the record in binary mode)"
        )
    ce_headers = [k for k in names if k.lower().startswith("ce_")]
    if ce_headers:
        problems.append(f"{where}: has ce_ headers {ce_headers}; structured records carry none")
    others = sorted(set(names) - {"content-type", "traceparent"})
    if others or len(set(names)) != len(names):
        problems.append(f"{where}: headers {names}; expected content-type and traceparent only")
    value = json_value(record)
    try:
        mode, event = read_as_the_binding_says(record)
    except Exception as exc:
        return [
            *problems,
            f"{where}: the SDK cannot read it as the binding says: {type(exc).__name__}: {exc}",
        ]
    if mode != "structured":
        problems.append(f"{where}: read in {mode} mode by the binding, not structured")
    try:
        auto = from_kafka(sdk_message(record), FORMAT)
    except Exception as exc:
        problems.append(
            f"{where}: the SDK's from_kafka cannot read it: {type(exc).__name__}: {exc}"
        )
    else:
        if (auto.get_attributes(), auto.get_data()) != (event.get_attributes(), event.get_data()):
            problems.append(f"{where}: from_kafka reads {auto.get_attributes()}, not the same")
    said = {
        "specversion": event.get_specversion(),
        "id": event.get_id(),
        "type": event.get_type(),
        "source": event.get_source(),
        "tenantid": event.get_extension("tenantid"),
        "datacontenttype": event.get_datacontenttype(),
        "data": event.get_data(),
    }
    expected = {name: value.get(name) for name in said}
    if said != expected:
        problems.append(f"{where}: the SDK's event says {said}, the JSON value {expected}")
    if event.get_type() != record.topic:
        problems.append(f"{where}: type {event.get_type()!r} on topic {record.topic!r}")
    if "time" not in value or event.get_time() != isoparse(value["time"]):
        problems.append(f"{where}: time {event.get_time()} vs {value.get('time')!r}")
    return problems


class Watch:
    """Every record of the tenant on the topics read, checked as it arrives: a mentornet record
    breaking the binding, or a dead letter, fails the test at once with what is wrong."""

    def __init__(self, reader: TopicReader, sent: dict[str, tuple[str, Mode]]) -> None:
        self.reader = reader
        self.sent = sent  # our ingress event ids -> (topic, mode)
        self.records: list[Any] = []
        self.problems: list[str] = []
        self.dead: list[Any] = []  # dead letters of the tenant but notifications' failures

    def ours(self, record: Any) -> bool:
        if attribute(record, "tenantid") == TENANT:
            return True
        return attribute(record, "id") in self.sent  # a binary letter without ce_tenantid

    async def poll(self) -> None:
        assert self.reader.consumer is not None
        batches = await self.reader.consumer.getmany(timeout_ms=200)
        for record in (r for records in batches.values() for r in records):
            if not self.ours(record):
                continue
            self.records.append(record)
            if record.topic in DEAD_LETTERS:
                if header(record, "dlq-reason-code") != b"delivery_failed":
                    self.dead.append(record)
            elif record.topic in EGRESS and from_mentornet(record):
                self.problems += format_problems(record)

    def check(self) -> None:
        assert not self.problems, "mentornet's records break the Kafka binding:\n" + "\n".join(
            self.problems[:20]
        )
        assert not self.dead, "dead-lettered:\n" + "\n".join(map(describe_letter, self.dead))

    async def until(
        self, what: str, done: Callable[[], bool | Awaitable[bool]], timeout: float = 20.0
    ) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self.check()
            result = done()
            if await result if inspect.isawaitable(result) else result:
                return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {what}; seen: {self.counts()}"
                )
            await self.poll()

    async def drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            await self.poll()
        self.check()

    def counts(self) -> dict[str, int]:
        return dict(Counter(r.topic for r in self.records))

    def data(self, topic: str, **match: Any) -> list[dict[str, Any]]:
        """The `data` of mentornet's records on `topic` whose fields equal `match`."""
        found = []
        for record in self.records:
            if record.topic == topic and from_mentornet(record):
                data = json_value(record).get("data") or {}
                if all(data.get(k) == v for k, v in match.items()):
                    found.append(data)
        return found


def describe_letter(record: Any) -> str:
    reason = {k: (v or b"").decode("utf-8", "replace") for k, v in record.headers or ()}
    sent = attribute(record, "id")
    return (
        f"{record.topic}: {reason.get('dlq-topic')} event {sent} "
        f"{reason.get('dlq-reason-code')}: {reason.get('dlq-reason')}"
    )


# --- publishing with the SDK -------------------------------------------------------------------


class Publisher:
    """Events built by the SDK and serialised by its Kafka binding, produced with aiokafka."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer
        self.sent: dict[str, tuple[str, Mode]] = {}

    async def send(
        self,
        topic: str,
        key: str,
        data: dict[str, Any],
        mode: Mode,
        stray_ce_headers: bool = False,
    ) -> CloudEvent:
        event = CloudEvent(
            attributes={
                "type": topic,
                "source": SOURCE,
                "id": uuid.uuid4().hex,
                "time": datetime.now(UTC),
                "tenantid": TENANT,
                "datacontenttype": "application/json",
            },
            data=data,
        )
        serialise = to_structured if mode == "structured" else to_binary
        message = serialise(event, FORMAT, key_mapper=lambda _: key)
        headers = list(message.headers.items())
        if mode == "structured":
            assert headers == [("content-type", STRUCTURED.encode())], headers
            assert json.loads(message.value)["data"] == data
        else:
            assert dict(headers)["content-type"] == b"application/json", headers
            assert dict(headers)["ce_tenantid"] == TENANT.encode(), headers
            assert json.loads(message.value) == data
        if stray_ce_headers:
            # A structured record that also carries some attributes as ce_ headers (a bridge
            # copied them for routing): the content type says structured, the headers are
            # ignored. Reading it as binary would find no source, time nor tenantid.
            headers += [
                ("ce_specversion", b"1.0"),
                ("ce_id", event.get_id().encode()),
                ("ce_type", topic.encode()),
            ]
        assert isinstance(message.key, str)
        await self.producer.send_and_wait(
            topic, message.value, key=message.key.encode(), headers=headers
        )
        self.sent[event.get_id()] = (topic, mode)
        return event


def person(person_id: str, program: str, name: str, **role: Any) -> dict[str, Any]:
    return {
        "person_id": person_id,
        "program_id": program,
        "display_name": name,
        "email": address(person_id),
        "languages": ["en"],
        "timezone": "Europe/Paris",
        **role,
    }


def mails(smtp: SmtpSink, person_id: str, kind: str) -> list[EmailMessage]:
    found = [
        message_from_bytes(m.content, policy=policy.default) for m in smtp.to(address(person_id))
    ]
    return [m for m in found if isinstance(m, EmailMessage) and m["X-Mentornet-Kind"] == kind]


async def answer_page(
    watch: Watch,
    smtp: SmtpSink,
    notifications: ServiceProcess,
    person_id: str,
    kind: str,
    form: dict[str, str],
) -> None:
    """Answer from the email's link as a person would (the page publishes the event)."""
    await watch.until(f"a {kind} email to {person_id}", lambda: bool(mails(smtp, person_id, kind)))
    part = mails(smtp, person_id, kind)[0].get_body(("plain",))
    assert part is not None
    links = LINK.findall(str(part.get_content()))
    wanted = [link for link in links if "choice" not in form or f"choice={form['choice']}" in link]
    assert wanted, f"no answer link in the {kind} email: {links}"
    url = urlsplit(wanted[0])
    token = parse_qs(url.query)["t"][0]
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{notifications.url}{url.path}", data={"t": token, **form})
    assert response.status_code == 200, (response.status_code, response.text[:300])


# --- the scenario ------------------------------------------------------------------------------


async def test_sdk_events_in_both_modes_take_effect_and_every_record_we_publish_is_structured(
    infra: Endpoints,
    system: dict[str, ServiceProcess],
    smtp: SmtpSink,
    db: asyncpg.Pool,
) -> None:
    assert set(EGRESS) == EXPECTED, f"the services publish {EGRESS}: cover the new topics"
    started = time.monotonic()
    bootstrap = infra.bootstrap_servers
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    publisher = Publisher(producer)
    try:
        async with TopicReader(bootstrap, *EGRESS, *DEAD_LETTERS) as reader:
            watch = Watch(reader, publisher.sent)
            await live(watch, publisher, system, smtp, db)
            await watch.drain(1.0)  # late dead letters, late records
    finally:
        await producer.stop()

    # Every ingress topic: at least one event of each mode, each taking effect (checked along
    # the way), none dead-lettered (Watch fails on any dead letter of the tenant).
    modes = {(topic, mode) for topic, mode in publisher.sent.values()}
    missing = [
        (t, m) for t in INGRESS_TOPICS for m in ("structured", "binary") if (t, m) not in modes
    ]
    assert not missing, f"ingress topics not exercised in a mode: {missing}"
    letters = [r for r in watch.records if r.topic in DEAD_LETTERS]
    assert all(header(r, "dlq-reason-code") == b"delivery_failed" for r in letters)
    assert not {attribute(r, "id") for r in letters} & set(publisher.sent)

    # Every topic the services publish was seen, and every record of it read by the binding.
    seen = {r.topic for r in watch.records if r.topic in EGRESS and from_mentornet(r)}
    assert seen >= SEEN_HERE, f"topics never seen: {sorted(SEEN_HERE - seen)}"
    checked = [r for r in watch.records if r.topic in EGRESS and from_mentornet(r)]
    assert all(not format_problems(r) for r in checked)
    print(
        f"\n{len(publisher.sent)} SDK events ({Counter(m for _, m in publisher.sent.values())}), "
        f"{len(checked)} mentornet records checked on {len(seen)} topics "
        f"({dict(Counter(r.topic for r in checked))}), {time.monotonic() - started:.1f}s"
    )


async def live(
    watch: Watch,
    publisher: Publisher,
    procs: dict[str, ServiceProcess],
    smtp: SmtpSink,
    db: asyncpg.Pool,
) -> None:
    send = publisher.send

    def counted(expected: int, sql: str, *args: Any) -> Callable[[], Awaitable[bool]]:
        """A check: the query (of the tenant, $1) counts `expected` rows."""

        async def check() -> bool:
            return bool(await db.fetchval(sql, TENANT, *args) == expected)

        return check

    # Two cohort programs, one configured per mode, their relationships lived in seconds.
    life = {
        "mode": "cohort",
        "relationship_length_days": 60 * SECONDS,
        "checkin_days": [2 * SECONDS],
        "stall_after_days": 4 * SECONDS,
    }
    await send("program-configured", PROGRAM_A, {"program_id": PROGRAM_A, **life}, "structured")
    await send("program-configured", PROGRAM_B, {"program_id": PROGRAM_B, **life}, "binary")

    async def configured() -> bool:
        rows = await db.fetch(
            "SELECT program_id, config FROM matching.programs WHERE tenant_id = $1", TENANT
        )
        configs = {r["program_id"]: json.loads(r["config"]) for r in rows}
        return set(configs) == {PROGRAM_A, PROGRAM_B} and all(
            c.get("mode") == "cohort" and c.get("stall_after_days") == life["stall_after_days"]
            for c in configs.values()
        )

    await watch.until("both programs configured (cohort mode)", configured)

    python = [{"topic": "python", "level": 5}]
    goal = [{"topic": "python", "priority": 1}]
    people: dict[str, tuple[str, dict[str, Any], Mode]] = {
        MENTOR_A: ("mentor-registered", person(MENTOR_A, PROGRAM_A, "Ada", expertise=python, capacity=1), "structured"),
        MENTOR_B: ("mentor-registered", person(MENTOR_B, PROGRAM_B, "Bob", expertise=python, capacity=1), "binary"),
        MENTEE_A: ("mentee-registered", person(MENTEE_A, PROGRAM_A, "Alan", goals=goal), "binary"),
        MENTEE_B: ("mentee-registered", person(MENTEE_B, PROGRAM_B, "Bea", goals=goal), "structured"),
    }  # fmt: skip
    for person_id, (topic, data, mode) in people.items():
        await send(topic, f"{TENANT}:{person_id}", data, mode)

    def enrolled() -> bool:
        stored = {d["person_id"]: d for d in watch.data("enrolment-updated")}
        return all(
            p in stored and stored[p]["display_name"] == data["display_name"]
            for p, (_, data, _) in people.items()
        )

    await watch.until("four enrolment-updated", enrolled)
    pool = (
        "SELECT (SELECT count(*) FROM matching.mentors WHERE tenant_id = $1)"
        " + (SELECT count(*) FROM matching.mentees WHERE tenant_id = $1)"
    )
    await watch.until("the four people in matching's pool", counted(4, pool))
    assert not watch.data("match-proposed"), "a cohort program proposed before its request"

    # A continuous program without mentors: its mentee waits, and matching says why.
    alone = person("mentee-c", PROGRAM_C, "Cleo", goals=goal)
    await send("mentee-registered", f"{TENANT}:mentee-c", alone, "binary")
    await watch.until(
        "mentee-c waits for want of a mentor",
        lambda: bool(watch.data("mentee-waiting", mentee_id="mentee-c", reason="no_mentor")),
    )

    await send("cohort-match-requested", PROGRAM_A, {"program_id": PROGRAM_A}, "structured")
    await send("cohort-match-requested", PROGRAM_B, {"program_id": PROGRAM_B}, "binary")
    await watch.until("a proposal in each cohort", lambda: len(watch.data("match-proposed")) >= 2)
    a = watch.data("match-proposed", program_id=PROGRAM_A)[0]
    b = watch.data("match-proposed", program_id=PROGRAM_B)[0]
    assert (a["mentor_id"], a["mentee_id"], b["mentor_id"], b["mentee_id"]) == (
        MENTOR_A,
        MENTEE_A,
        MENTOR_B,
        MENTEE_B,
    )
    match_a, match_b = a["match_id"], b["match_id"]

    def respond(match_id: str, who: str) -> dict[str, Any]:
        return {"match_id": match_id, "person_id": who, "decision": "accepted"}

    await send("match-responded", match_a, respond(match_a, MENTOR_A), "structured")
    await send("match-responded", match_b, respond(match_b, MENTOR_B), "binary")
    await send("match-responded", match_b, respond(match_b, MENTEE_B), "structured")
    notifications = procs["notifications"]
    await answer_page(watch, smtp, notifications, MENTEE_A, "match-proposal", {"choice": "accept"})
    await watch.until("both matches confirmed", lambda: len(watch.data("match-confirmed")) == 2)
    assert watch.data("match-responded", match_id=match_a, person_id=MENTEE_A)  # the page's

    # A pause and a return, one per mode: in the database (relationships go on meanwhile).
    pause = {"person_id": MENTOR_A, "program_id": PROGRAM_A}
    paused = (
        "SELECT count(*) FROM matching.availability"
        " WHERE tenant_id = $1 AND person_id = $2 AND paused_until IS {}"
    )
    await send("mentor-availability", f"{TENANT}:{MENTOR_A}", {**pause, "available": False}, "structured")  # fmt: skip
    await watch.until("mentor-a paused", counted(1, paused.format("NOT NULL"), MENTOR_A))
    await send("mentor-availability", f"{TENANT}:{MENTOR_A}", {**pause, "available": True}, "binary")  # fmt: skip
    await watch.until("mentor-a back", counted(1, paused.format("NULL"), MENTOR_A))

    # The check-in is asked of both sides, then each quiet relationship is reported stalled.
    await watch.until(
        "check-ins asked and stalls reported",
        lambda: (
            len(watch.data("feedback-requested", kind="checkin")) >= 4
            and len(watch.data("relationship-stalled")) >= 2
        ),
    )
    session = {"session_id": "s-1", "duration_minutes": 45, "mentor_rating": 5}
    await send("session-completed", match_a, {"match_id": match_a, **session}, "structured")
    await send("session-completed", match_b, {"match_id": match_b, **session}, "binary")
    second = {**session, "session_id": "s-2"}
    await send("session-completed", match_a, {"match_id": match_a, **second}, "structured", stray_ce_headers=True)  # fmt: skip
    checkin = {"kind": "checkin", "rating": 4, "learned": True}
    await send("feedback-given", match_a, {"match_id": match_a, "person_id": MENTOR_A, **checkin}, "structured")  # fmt: skip
    await send("feedback-given", match_b, {"match_id": match_b, "person_id": MENTEE_B, **checkin}, "binary")  # fmt: skip
    await watch.until(
        "three sessions recorded",
        counted(3, "SELECT count(*) FROM matching.sessions WHERE tenant_id = $1"),
    )
    feedback = "SELECT count(*) FROM matching.feedback WHERE tenant_id = $1 AND kind = $2"
    await watch.until("two check-ins answered", counted(2, feedback, "checkin"))

    ended = {"reason": "goals_reached", "ended_by": "mentee", "person_id": MENTEE_A}
    await send("relationship-ended", match_a, {"match_id": match_a, **ended}, "structured")
    ended = {"reason": "not_a_fit", "ended_by": "mentor", "person_id": MENTOR_B}
    await send("relationship-ended", match_b, {"match_id": match_b, **ended}, "binary")
    await watch.until("both relationships ended", lambda: len(watch.data("match-ended")) == 2)
    outcomes = {d["match_id"]: (d["outcome"], d["reason"]) for d in watch.data("match-ended")}
    assert outcomes == {
        match_a: ("completed", "goals_reached"),
        match_b: ("ended_early", "not_a_fit"),
    }

    closing = {"kind": "closing", "rating": 5, "learned": True}
    reached = [{"topic": "python", "reached": "partly"}]
    await send("feedback-given", match_a, {"match_id": match_a, "person_id": MENTOR_A, **closing}, "binary")  # fmt: skip
    await send("feedback-given", match_b, {"match_id": match_b, "person_id": MENTEE_B, **closing, "goals": reached}, "structured")  # fmt: skip
    await send("feedback-given", match_b, {"match_id": match_b, "person_id": MENTOR_B, **closing}, "binary")  # fmt: skip
    form = {"rating": "4", "learned": "yes"}
    await answer_page(watch, smtp, notifications, MENTEE_A, "closing-feedback-request", form)
    await watch.until("four closing feedbacks", counted(4, feedback, "closing"))
    assert watch.data("feedback-given", match_id=match_a, person_id=MENTEE_A)  # the page's

    await send("person-offboarded", f"{TENANT}:{MENTEE_A}", {"person_id": MENTEE_A}, "structured")
    await send("person-offboarded", f"{TENANT}:{MENTOR_B}", {"person_id": MENTOR_B}, "binary")
    await watch.until(
        "both offboarded (enrolment-ended)",
        lambda: (
            {d["person_id"] for d in watch.data("enrolment-ended", erase=True)}
            == {MENTEE_A, MENTOR_B}
        ),
    )
    await watch.until(
        "deliveries reported: sent, and failed for mentor-b",
        lambda: (
            bool(watch.data("notification-delivered"))
            and bool(watch.data("notification-failed", recipient_id=MENTOR_B))
        ),
    )
