"""notifications end to end against the real Kafka and PostgreSQL (the session `infra`: the
KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL environment first), a real SMTP server (aiosmtpd) and a
real HTTP receiver, with the service running in-process (`build(settings)`, `app.start()`).

Every test uses its own tenant, and every tenant is sent to this module's receivers (an email
endpoint of its own in tenant_channels), so the tests share one broker and one database with
anything else, including another notifications replica, without seeing each other's mail.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import re
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import RecordMetadata
from faststream.asgi import AsgiFastStream

from services.notifications.domain import notification_id
from services.notifications.entrypoint import build
from services.notifications.settings import NotificationSettings, TenantChannel
from shared.contract.topics import TOPICS, dead_letter_topic
from shared.local.infra import Endpoints
from shared.local.sinks import SmtpSink, WebhookSink
from shared.runtime.settings import KafkaSettings
from tests.support import fresh_group, pool_fixture

pytestmark = pytest.mark.integration

RUN = uuid.uuid4().hex[:10]
NAMES = (
    "proposal",
    "webhook",
    "flaky",
    "flaky-hook",
    "erase",
    "offers",
    "remind",
    "refused",
    "unconfirmed",
    "held",
    "same-session",
    "hook-plain",
    "hook-loopback",
    "lifecycle",
    "lifecycle-order",
)
WEBHOOK_ONLY = ("webhook", "flaky-hook", "refused", "hook-plain", "hook-loopback")
TENANT = {name: f"t-{RUN}-{name}" for name in NAMES}
SECRET = "test-secret-" + RUN
REMINDER_BEFORE = 6.0  # seconds; proposals expiring later than that get a reminder
RETRY_BASE = 0.3

# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def webhook() -> AsyncIterator[WebhookSink]:
    sink = await WebhookSink().start()
    yield sink
    await sink.stop()


@pool_fixture("module", max_size=3, search_path="notifications")
def db(infra: Endpoints) -> str:
    """This module's own pool: notifications' schema first (overrides the session `db`)."""
    return infra.database_url


@pytest.fixture(scope="module", autouse=True)
async def clean_up(db: asyncpg.Pool) -> AsyncIterator[None]:
    """This module's tenants leave no rows behind."""
    yield
    tables = ("deliveries", "contacts", "matches", "responses", "tenant_channels")
    for table in (*tables, "feedback_sessions"):
        await db.execute(
            f"DELETE FROM {table} WHERE tenant_id = ANY($1::text[])", list(TENANT.values())
        )


@pytest.fixture(scope="module")
async def service(
    infra: Endpoints, db: asyncpg.Pool, smtp: SmtpSink, webhook: WebhookSink
) -> AsyncIterator[AsgiFastStream]:
    email_endpoint = f"smtp://{smtp.host}:{smtp.port}?starttls=false"
    channels = [
        TenantChannel(tenant_id=t, channel="email", endpoint=email_endpoint)
        for name, t in TENANT.items()
        if name not in WEBHOOK_ONLY
    ] + [
        # configured through the settings (NOTIFICATIONS_TENANTS) ...
        TenantChannel(
            tenant_id=TENANT["webhook"], channel="webhook", endpoint=webhook.url, secret=SECRET
        )
    ]
    # ... or straight in the table, as an operator would
    await db.execute(
        "INSERT INTO tenant_channels VALUES ($1, 'webhook', $2, $3)",
        TENANT["flaky-hook"],
        webhook.url,
        SECRET,
    )
    settings = NotificationSettings(
        kafka=KafkaSettings(bootstrap_servers=infra.bootstrap_servers),
        database_url=infra.database_url,
        # at the topics' ends: no backlog of other runs to replay before this module's events
        consumer_group=await fresh_group(infra.bootstrap_servers, "notifications", "notif-test"),
        smtp_host="127.0.0.1",
        smtp_port=1,  # nothing listens there: every test tenant names its own relay
        notifications_tenants=channels,
        webhook_allowed_hosts=["127.0.0.1"],  # this module's receivers (but 127.0.0.2)
        delivery_tenants=list(TENANT.values()),
        delivery_poll_seconds=0.2,
        retry_base_seconds=RETRY_BASE,
        retry_max_seconds=5.0,
        reminder_before_seconds=REMINDER_BEFORE,
        batch_max_records=200,
    )
    app = build(settings)
    await app.start()
    yield app
    await app.stop()


@pytest.fixture(scope="module")
async def producer(infra: Endpoints) -> AsyncIterator[AIOKafkaProducer]:
    producer = AIOKafkaProducer(
        bootstrap_servers=infra.bootstrap_servers, acks="all", enable_idempotence=True
    )
    await producer.start()
    yield producer
    await producer.stop()


# --- helpers -----------------------------------------------------------------------------------


def person() -> str:
    return f"p-{uuid.uuid4().hex[:12]}"


def address(person_id: str) -> str:
    return f"{person_id}@example.com"


def event(
    tenant: str, type_: str, data: dict[str, Any], event_id: str | None = None
) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": event_id or str(uuid.uuid4()),
        "source": "tests/notifications",
        "type": type_,
        "time": datetime.now(UTC).isoformat(),
        "tenantid": tenant,
        "data": data,
    }


def enrolment(
    tenant: str,
    person_id: str,
    *,
    role: str,
    languages: list[str],
    name: str | None = None,
    registered_at: datetime | None = None,
    **extra: Any,
) -> dict[str, Any]:
    return event(
        tenant,
        "enrolment-updated",
        {
            "program_id": "prog-1",
            "person_id": person_id,
            "role": role,
            "display_name": name or f"Person {person_id}",
            "email": address(person_id),
            "languages": languages,
            "timezone": "Europe/Paris",
            "registered_at": (registered_at or datetime.now(UTC)).isoformat(),
            **extra,
        },
    )


def proposed(
    tenant: str, match_id: str, mentee: str, mentor: str, expires_in: timedelta
) -> dict[str, Any]:
    return event(
        tenant,
        "match-proposed",
        {
            "match_id": match_id,
            "program_id": "prog-1",
            "mentee_id": mentee,
            "mentor_id": mentor,
            "score": 0.82,
            "explanation": [
                {
                    "criterion": "topic_fit",
                    "weight": 0.5,
                    "contribution": 0.4,
                    "reason": "Covers your goal: python",
                    "facts": {
                        "goals": [{"topic": "python", "priority": 1, "covered": True}],
                        "covered": ["python"],
                        "not_covered": [],
                    },
                },
                {
                    "criterion": "languages",
                    "weight": 0.2,
                    "contribution": 0.2,
                    "reason": "You both speak English",
                    "facts": {"shared": ["en"]},
                },
            ],
            "expires_at": (datetime.now(UTC) + expires_in).isoformat(),
        },
    )


def match_event(
    tenant: str, type_: str, match_id: str, mentee: str, mentor: str, **extra: Any
) -> dict[str, Any]:
    data = {"match_id": match_id, "program_id": "prog-1", "mentee_id": mentee, "mentor_id": mentor}
    return event(tenant, type_, {**data, **extra})


async def publish(producer: AIOKafkaProducer, ev: dict[str, Any], key: str) -> RecordMetadata:
    """Raw CloudEvents JSON (structured mode), as any publisher would send it."""
    return await producer.send_and_wait(ev["type"], json.dumps(ev).encode(), key=key.encode())


async def eventually(probe: Callable[[], Any], timeout: float = 30.0, interval: float = 0.1) -> Any:
    """The first truthy value `probe` returns (awaited if it is a coroutine), or fail."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = probe()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


async def consumed(db: asyncpg.Pool, meta: RecordMetadata) -> bool:
    """Whether the service applied the record (its offset is stored with the batch)."""
    offset = await db.fetchval(
        'SELECT "offset" FROM consumed_offsets WHERE topic = $1 AND partition = $2',
        meta.topic,
        meta.partition,
    )
    return offset is not None and offset >= meta.offset


def parsed(content: bytes) -> EmailMessage:
    message = message_from_bytes(content, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def expected_message_id(tenant: str, ev: dict[str, Any], recipient: str, kind: str) -> str:
    return f"<{notification_id(tenant, ev['id'], recipient, 'email', kind)}@mentornet>"


@dataclass(frozen=True)
class Topics:
    """Reads what the service published, from offsets taken before the test acted."""

    bootstrap: str

    async def end(self, topic: str) -> dict[TopicPartition, int]:
        """The current end offset of each partition (partition counts from the registry)."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            partitions = [TopicPartition(topic, p) for p in range(TOPICS[topic].partitions)]
            return await consumer.end_offsets(partitions)
        finally:
            await consumer.stop()

    async def since(self, start: dict[TopicPartition, int], seconds: float = 2.0) -> list[Any]:
        """Every record written to these partitions after `start`, read for `seconds`."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            consumer.assign(list(start))
            for tp, offset in start.items():
                consumer.seek(tp, offset)
            records: list[Any] = []
            deadline = asyncio.get_running_loop().time() + seconds
            while asyncio.get_running_loop().time() < deadline:
                batch = await consumer.getmany(timeout_ms=200)
                for part in batch.values():
                    records += part
            return records
        finally:
            await consumer.stop()


@pytest.fixture(scope="module")
def topics(infra: Endpoints) -> Topics:
    return Topics(infra.bootstrap_servers)


def header(record: Any, name: str) -> str | None:
    for key, value in record.headers or ():
        if key == name:
            return value.decode()
    return None


# --- tests -------------------------------------------------------------------------------------


async def test_proposal_mails_both_sides_once_in_their_language(
    service: AsgiFastStream,
    smtp: SmtpSink,
    db: asyncpg.Pool,
    producer: AIOKafkaProducer,
    topics: Topics,
) -> None:
    tenant = TENANT["proposal"]
    mentee, mentor, match = person(), person(), f"m-{uuid.uuid4().hex[:8]}"
    delivered_from = await topics.end("notification-delivered")
    await publish(
        producer,
        enrolment(
            tenant, mentee, role="mentee", languages=["fr", "en"], name="Amélie <script>x</script>"
        ),
        f"{tenant}:prog-1",
    )
    await publish(
        producer,
        enrolment(tenant, mentor, role="mentor", languages=["de", "en"]),
        f"{tenant}:prog-1",
    )
    proposal = proposed(tenant, match, mentee, mentor, timedelta(days=3))
    await publish(producer, proposal, match)

    await eventually(lambda: smtp.to(address(mentee)) and smtp.to(address(mentor)))
    to_mentee = parsed(smtp.to(address(mentee))[0].content)
    to_mentor = parsed(smtp.to(address(mentor))[0].content)
    assert to_mentee["Message-ID"] == expected_message_id(
        tenant, proposal, mentee, "match-proposal"
    )
    assert to_mentor["Message-ID"] == expected_message_id(
        tenant, proposal, mentor, "match-proposal"
    )
    assert to_mentee["Subject"] == (
        f"Nous vous proposons Person {mentor} comme mentor : acceptez-vous ?"
    )
    assert to_mentor["Subject"] == "Would you mentor Amélie <script>x</script>?"
    html = to_mentee.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "&lt;script&gt;" in html and "<script>" not in html
    text = to_mentee.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Sujets : Couvre votre objectif : python" in text  # written to the mentee, in French
    assert "Accepter : http" in text and "choice=accept" in text
    assert address(mentor) not in text + html  # addresses stay hidden until both accept
    to_mentor_text = to_mentor.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Topics: Wants to learn: python; your expertise covers it" in to_mentor_text

    # the same event again (a producer retry, a replay): nothing is sent twice
    again = await publish(producer, proposal, match)
    await eventually(lambda: consumed(db, again))
    await asyncio.sleep(1.0)
    assert len(smtp.to(address(mentee))) == len(smtp.to(address(mentor))) == 1
    rows = await db.fetch(
        "SELECT kind, state FROM deliveries WHERE tenant_id = $1 AND source_event_id = $2",
        tenant,
        proposal["id"],
    )
    assert sorted((r["kind"], r["state"]) for r in rows) == [
        ("match-proposal", "sent"),
        ("match-proposal", "sent"),
        ("match-reminder", "pending"),  # due a day before the deadline
        ("match-reminder", "pending"),
    ]

    # and each delivery was reported once on notification-delivered
    async def reported() -> list[Any]:
        records = await topics.since(delivered_from, 1.0)
        return [r for r in records if json.loads(r.value)["tenantid"] == tenant]

    outcomes = await eventually(reported, timeout=15)
    assert sorted(json.loads(r.value)["data"]["recipient_id"] for r in outcomes) == sorted(
        [mentee, mentor]
    )


async def test_webhook_tenant_gets_signed_introductions_and_feedback_requests(
    service: AsgiFastStream, smtp: SmtpSink, webhook: WebhookSink, producer: AIOKafkaProducer
) -> None:
    tenant = TENANT["webhook"]
    mentee, mentor, match = person(), person(), f"m-{uuid.uuid4().hex[:8]}"
    await publish(
        producer,
        enrolment(tenant, mentee, role="mentee", languages=["en"], name="Ada"),
        f"{tenant}:prog-1",
    )
    await publish(
        producer,
        enrolment(tenant, mentor, role="mentor", languages=["fr"], name="Grace"),
        f"{tenant}:prog-1",
    )
    confirmed = match_event(
        tenant, "match-confirmed", match, mentee, mentor, confirmed_at=datetime.now(UTC).isoformat()
    )
    await publish(producer, confirmed, match)

    def hooks_for(kind: str) -> list[Any]:
        found = []
        for hook in list(webhook.hooks):
            body = json.loads(hook.body)
            if body["tenant_id"] == tenant and body["kind"] == kind:
                found.append((hook, body))
        return found

    intros = await eventually(
        lambda: len(hooks_for("match-introduction")) == 2 and hooks_for("match-introduction")
    )
    for hook, body in intros:
        # verify the signature with our own HMAC code, over the raw body received
        timestamp = hook.headers["x-mentornet-timestamp"]
        mac = hmac.new(SECRET.encode(), timestamp.encode() + b"." + hook.body, hashlib.sha256)
        assert hook.headers["x-mentornet-signature"] == "sha256=" + mac.hexdigest()
        recipient = body["recipient"]["person_id"]
        assert hook.headers["idempotency-key"] == str(
            notification_id(tenant, confirmed["id"], recipient, "webhook", "match-introduction")
        )
        partner_name = "Grace" if recipient == mentee else "Ada"
        assert partner_name in body["text"] and partner_name in body["subject"]
    locales = {body["recipient"]["person_id"]: body["recipient"]["locale"] for _, body in intros}
    assert locales == {mentee: "en", mentor: "fr"}

    session = event(
        tenant,
        "session-completed",
        {"match_id": match, "session_id": "s-1", "duration_minutes": 45},
    )
    await publish(producer, session, match)
    feedback = await eventually(
        lambda: len(hooks_for("feedback-request")) == 2 and hooks_for("feedback-request")
    )
    assert {b["recipient"]["person_id"] for _, b in feedback} == {mentee, mentor}
    assert not smtp.to(address(mentee)) and not smtp.to(address(mentor))  # webhook only


async def test_refusing_smtp_server_is_retried_with_backoff_without_holding_up_others(
    service: AsgiFastStream,
    smtp: SmtpSink,
    webhook: WebhookSink,
    db: asyncpg.Pool,
    producer: AIOKafkaProducer,
) -> None:
    tenant, hook_tenant = TENANT["flaky"], TENANT["flaky-hook"]
    mentee, mentor, match = person(), person(), f"m-{uuid.uuid4().hex[:8]}"
    other_mentee, other_mentor, other_match = person(), person(), f"m-{uuid.uuid4().hex[:8]}"
    refusals = 3
    smtp.refuse[address(mentee)] = refusals  # 421 to the first three attempts, then accepts
    for t, p, role in (
        (tenant, mentee, "mentee"),
        (tenant, mentor, "mentor"),
        (hook_tenant, other_mentee, "mentee"),
        (hook_tenant, other_mentor, "mentor"),
    ):
        await publish(producer, enrolment(t, p, role=role, languages=["en"]), f"{t}:prog-1")
    await publish(producer, proposed(tenant, match, mentee, mentor, timedelta(days=3)), match)
    await publish(
        producer,
        proposed(hook_tenant, other_match, other_mentee, other_mentor, timedelta(days=3)),
        other_match,
    )

    def hooks() -> list[Any]:
        return [h for h in list(webhook.hooks) if json.loads(h.body)["tenant_id"] == hook_tenant]

    await eventually(lambda: smtp.to(address(mentor)) and len(hooks()) == 2)
    healthy_done = max(smtp.to(address(mentor))[0].received_at, *(h.received_at for h in hooks()))
    mail = (await eventually(lambda: smtp.to(address(mentee)), timeout=30))[0]

    attempts = smtp.attempts[address(mentee)]
    assert len(attempts) == refusals + 1
    assert len(smtp.to(address(mentee))) == 1  # nothing lost, nothing doubled
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    for n, gap in enumerate(gaps, start=1):  # equal jitter: at least half the nominal delay
        assert gap >= RETRY_BASE * 2 ** (n - 1) / 2 - 0.02, gaps
    assert gaps[-1] > gaps[0]
    assert healthy_done < mail.received_at  # the healthy paths did not wait for the retries
    row = await eventually(
        lambda: db.fetchrow(
            """SELECT state, attempts, last_error FROM deliveries
               WHERE tenant_id = $1 AND recipient_id = $2 AND kind = 'match-proposal'
                 AND state = 'sent'""",
            tenant,
            mentee,
        )
    )
    assert (row["state"], row["attempts"], row["last_error"]) == ("sent", refusals + 1, None)


async def test_offboarded_person_gets_nothing_and_keeps_no_personal_data(
    service: AsgiFastStream, smtp: SmtpSink, db: asyncpg.Pool, producer: AIOKafkaProducer
) -> None:
    tenant = TENANT["erase"]
    leaver, unknown_leaver, mentor = person(), person(), person()
    key = f"{tenant}:prog-1"
    registered = datetime.now(UTC) - timedelta(minutes=5)
    await publish(producer, enrolment(tenant, mentor, role="mentor", languages=["en"]), key)
    await publish(
        producer,
        enrolment(tenant, leaver, role="mentee", languages=["fr"], registered_at=registered),
        key,
    )

    async def proposal_to_mentor(match_id: str) -> asyncpg.Record | None:
        return await db.fetchrow(
            """SELECT state, last_error FROM deliveries
               WHERE tenant_id = $1 AND recipient_id = $2 AND match_id = $3
                 AND kind = 'match-proposal'""",
            tenant,
            mentor,
            match_id,
        )

    # a proposal for someone whose contact has not arrived yet waits for it, on both sides
    # (the mentor's names them) ...
    waiting_match = f"m-{uuid.uuid4().hex[:8]}"
    await publish(
        producer,
        proposed(tenant, waiting_match, unknown_leaver, mentor, timedelta(days=3)),
        waiting_match,
    )

    async def waits(match_id: str) -> bool:
        row = await proposal_to_mentor(match_id)
        return row is not None and (row["state"], row["last_error"]) == (
            "pending",
            "waiting for contact",
        )

    await eventually(lambda: waits(waiting_match))

    async def contact_erased(person_id: str) -> bool:
        row = await db.fetchrow(
            "SELECT * FROM contacts WHERE tenant_id = $1 AND person_id = $2", tenant, person_id
        )
        return row is not None and row["erased_at"] is not None

    # ... then both leave
    for p in (leaver, unknown_leaver):
        await publish(
            producer,
            event(
                tenant, "enrolment-ended", {"program_id": "prog-1", "person_id": p, "erase": True}
            ),
            key,
        )
    await eventually(lambda: contact_erased(leaver))
    await eventually(lambda: contact_erased(unknown_leaver))

    # a registration older than the erasure arriving late, and a proposal after it
    late = await publish(
        producer,
        enrolment(
            tenant, unknown_leaver, role="mentee", languages=["en"], registered_at=registered
        ),
        key,
    )
    match = f"m-{uuid.uuid4().hex[:8]}"
    after = await publish(
        producer, proposed(tenant, match, leaver, mentor, timedelta(days=3)), match
    )
    await eventually(lambda: consumed(db, late))
    await eventually(lambda: consumed(db, after))

    async def cancelled(match_id: str) -> bool:
        row = await proposal_to_mentor(match_id)
        return row is not None and (row["state"], row["last_error"]) == (
            "cancelled",
            "partner erased",
        )

    # the mentor is never told about someone erased: a proposal naming them is dropped (the
    # one that waited for them is dropped when it wakes up; nothing is sent meanwhile)
    await eventually(lambda: cancelled(match))
    await asyncio.sleep(1.0)

    assert smtp.to(address(mentor)) == []
    await eventually(lambda: cancelled(waiting_match))  # woken by the erasure, not left waiting
    explanation = await db.fetchval(  # what the proposal said of them goes with them
        "SELECT explanation FROM matches WHERE tenant_id = $1 AND match_id = $2",
        tenant,
        waiting_match,
    )
    assert explanation is None
    assert smtp.to(address(leaver)) == [] and smtp.to(address(unknown_leaver)) == []
    for p in (leaver, unknown_leaver):
        row = await db.fetchrow(
            "SELECT * FROM contacts WHERE tenant_id = $1 AND person_id = $2", tenant, p
        )
        assert row["display_name"] is None and row["email"] is None and row["timezone"] is None
        assert row["languages"] == [] and row["role"] is None
        states = await db.fetch(
            "SELECT kind, state, last_error FROM deliveries WHERE tenant_id = $1 AND recipient_id = $2",
            tenant,
            p,
        )
        assert states and {r["state"] for r in states} == {"cancelled"}, states


async def test_what_each_side_can_share_or_would_learn_is_shown_until_they_leave(
    service: AsgiFastStream, smtp: SmtpSink, db: asyncpg.Pool, producer: AIOKafkaProducer
) -> None:
    """enrolment-updated's offers (mentee) and learning_interests (mentor) reach the other
    side's proposal email and answer page, and are erased with the rest when they leave."""
    tenant = TENANT["offers"]
    mentee, mentor, match = person(), person(), f"m-{uuid.uuid4().hex[:8]}"
    key = f"{tenant}:prog-1"
    # the mentee says what they can share in a later enrolment-updated
    earlier = datetime.now(UTC) - timedelta(minutes=1)
    first = await publish(
        producer,
        enrolment(tenant, mentee, role="mentee", languages=["fr"], registered_at=earlier),
        key,
    )
    await eventually(lambda: consumed(db, first))  # stored before the next one comes
    offers = {"offers": ["sql", "prise de notes"]}
    later = await publish(
        producer, enrolment(tenant, mentee, role="mentee", languages=["fr"], **offers), key
    )
    interests = {"learning_interests": ["tiktok"]}
    await publish(
        producer, enrolment(tenant, mentor, role="mentor", languages=["en"], **interests), key
    )
    await eventually(lambda: consumed(db, later))  # the proposal must not find the first only
    await publish(producer, proposed(tenant, match, mentee, mentor, timedelta(days=3)), match)

    await eventually(lambda: smtp.to(address(mentee)) and smtp.to(address(mentor)))
    to_mentor = parsed(smtp.to(address(mentor))[0].content)
    text = to_mentor.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "- Can share: sql, prise de notes" in text
    to_mentee = parsed(smtp.to(address(mentee))[0].content)
    assert "- Souhaite apprendre : tiktok" in (
        to_mentee.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    )
    # the answer page behind the mentor's Accept link shows it too
    link = re.search(r"Accept: (\S+)", text)
    assert link, text
    accept = urlsplit(link[1])
    transport = httpx.ASGITransport(app=service)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as browser:
        page = await browser.get(f"{accept.path}?{accept.query}")
    assert page.status_code == 200
    assert "<dt>Can share</dt>" in page.text and "sql, prise de notes" in page.text

    for p in (mentee, mentor):
        await publish(
            producer,
            event(
                tenant, "enrolment-ended", {"program_id": "prog-1", "person_id": p, "erase": True}
            ),
            key,
        )

    async def erased() -> list[asyncpg.Record]:
        rows = await db.fetch(
            """SELECT offers, learning_interests FROM contacts
               WHERE tenant_id = $1 AND erased_at IS NOT NULL""",
            tenant,
        )
        return rows if len(rows) == 2 else []

    rows = await eventually(erased)
    assert [(r["offers"], r["learning_interests"]) for r in rows] == [(None, None)] * 2


async def test_reminder_goes_only_to_who_has_not_answered(
    service: AsgiFastStream,
    smtp: SmtpSink,
    db: asyncpg.Pool,
    producer: AIOKafkaProducer,
    topics: Topics,
) -> None:
    tenant = TENANT["remind"]
    mentee, mentor, match = person(), person(), f"m-{uuid.uuid4().hex[:8]}"
    for p, role in ((mentee, "mentee"), (mentor, "mentor")):
        await publish(
            producer, enrolment(tenant, p, role=role, languages=["en"]), f"{tenant}:prog-1"
        )
    dlq_from = await topics.end(dead_letter_topic("notifications"))
    await publish(
        producer,
        proposed(tenant, match, mentee, mentor, timedelta(seconds=REMINDER_BEFORE + 4)),
        match,
    )
    answer = {"match_id": match, "person_id": mentee, "decision": "accepted"}
    invalid = await publish(
        producer, event(tenant, "match-responded", {**answer, "decision": "maybe"}), match
    )
    valid = await publish(producer, event(tenant, "match-responded", answer), match)
    await eventually(lambda: consumed(db, valid))

    reminders = await eventually(
        lambda: [m for m in smtp.to(address(mentor)) if "Reminder" in parsed(m.content)["Subject"]]
    )
    assert len(reminders) == 1
    await asyncio.sleep(0.5)
    assert [parsed(m.content)["Subject"] for m in smtp.to(address(mentee))] == [
        f"Person {mentor} is proposed as your mentor: will you accept?"
    ]

    # the invalid answer is matching's to dead-letter, not ours
    assert invalid.partition == valid.partition and invalid.offset < valid.offset
    dead = [
        r
        for r in await topics.since(dlq_from, 1.5)
        if header(r, "dlq-topic") == "match-responded"
        and header(r, "dlq-offset") == str(invalid.offset)
        and header(r, "dlq-partition") == str(invalid.partition)
    ]
    assert dead == []

    # declined: the mentee hears the next proposal is on its way
    await publish(
        producer,
        match_event(tenant, "match-ended", match, mentee, mentor, outcome="declined"),
        match,
    )
    await eventually(
        lambda: any(
            "next mentoring proposal" in parsed(m.content)["Subject"]
            for m in smtp.to(address(mentee))
        )
    )


async def test_permanent_refusal_fails_once_and_is_reported(
    service: AsgiFastStream, db: asyncpg.Pool, producer: AIOKafkaProducer, topics: Topics
) -> None:
    tenant = TENANT["refused"]
    refusing = await WebhookSink(status=400).start()
    try:
        await db.execute(
            "INSERT INTO tenant_channels VALUES ($1, 'webhook', $2, $3)",
            tenant,
            refusing.url,
            SECRET,
        )
        mentee, mentor, match = person(), person(), f"m-{uuid.uuid4().hex[:8]}"
        failed_from = await topics.end("notification-failed")
        dlq_from = await topics.end(dead_letter_topic("notifications"))
        for p, role in ((mentee, "mentee"), (mentor, "mentor")):
            await publish(
                producer, enrolment(tenant, p, role=role, languages=["en"]), f"{tenant}:prog-1"
            )
        await publish(
            producer,
            match_event(tenant, "match-ended", match, mentee, mentor, outcome="expired"),
            match,
        )

        row = await eventually(
            lambda: db.fetchrow(
                "SELECT * FROM deliveries WHERE tenant_id = $1 AND state = 'failed'", tenant
            )
        )
        assert (row["attempts"], row["last_error"]) == (1, "HTTP 400")
        assert sum(refusing.counts.values()) == 1  # a 4xx is not retried

        async def reported(start: dict[TopicPartition, int]) -> list[Any]:
            records = await topics.since(start, 1.0)
            return [r for r in records if json.loads(r.value)["tenantid"] == tenant]

        failed = await eventually(lambda: reported(failed_from), timeout=15)
        assert json.loads(failed[0].value)["data"]["error"] == "HTTP 400"
        dead = await eventually(lambda: reported(dlq_from), timeout=15)
        assert header(dead[0], "dlq-reason-code") == "delivery_failed"
    finally:
        await refusing.stop()


# --- feedback requests: confirmed matches only, once per session ---------------------------------


def session_completed(
    tenant: str, match_id: str, session_id: str = "s-1", event_id: str | None = None
) -> dict[str, Any]:
    return event(
        tenant,
        "session-completed",
        {"match_id": match_id, "session_id": session_id, "duration_minutes": 45},
        event_id,
    )


def confirmed_event(tenant: str, match_id: str, mentee: str, mentor: str) -> dict[str, Any]:
    return match_event(
        tenant,
        "match-confirmed",
        match_id,
        mentee,
        mentor,
        confirmed_at=datetime.now(UTC).isoformat(),
    )


async def enrol_pair(producer: AIOKafkaProducer, tenant: str) -> tuple[str, str]:
    mentee, mentor = person(), person()
    for p, role in ((mentee, "mentee"), (mentor, "mentor")):
        await publish(
            producer, enrolment(tenant, p, role=role, languages=["en"]), f"{tenant}:prog-1"
        )
    return mentee, mentor


async def feedback_rows(db: asyncpg.Pool, tenant: str) -> list[asyncpg.Record]:
    return await db.fetch(
        """SELECT recipient_id, source_event_id, context->>'session_id' AS session_id, state
           FROM deliveries WHERE tenant_id = $1 AND kind = 'feedback-request'
           ORDER BY recipient_id, session_id""",
        tenant,
    )


def feedback_mails(smtp: SmtpSink, person_id: str) -> list[Any]:
    return [
        m
        for m in smtp.to(address(person_id))
        if "X-Mentornet-Kind: feedback-request" in m.content.decode(errors="replace")
    ]


async def test_no_feedback_request_for_a_match_never_confirmed(
    service: AsgiFastStream, smtp: SmtpSink, db: asyncpg.Pool, producer: AIOKafkaProducer
) -> None:
    """A session of a match only proposed names a partner who never said yes: no feedback
    request, and none later either once the proposal has expired."""
    tenant = TENANT["unconfirmed"]
    mentee, mentor = await enrol_pair(producer, tenant)
    match = f"m-{uuid.uuid4().hex[:8]}"
    await publish(producer, proposed(tenant, match, mentee, mentor, timedelta(days=3)), match)
    await eventually(lambda: smtp.to(address(mentee)) and smtp.to(address(mentor)))

    session = await publish(producer, session_completed(tenant, match), match)
    await eventually(lambda: consumed(db, session))
    ended = await publish(
        producer,
        match_event(tenant, "match-ended", match, mentee, mentor, outcome="expired"),
        match,
    )
    await eventually(lambda: consumed(db, ended))
    await eventually(  # the mentee hears the next proposal is coming: the end was applied
        lambda: any(
            "next mentoring" in parsed(m.content)["Subject"] for m in smtp.to(address(mentee))
        )
    )
    await asyncio.sleep(1.0)

    assert await feedback_rows(db, tenant) == []
    assert feedback_mails(smtp, mentee) == feedback_mails(smtp, mentor) == []
    assert (
        await db.fetchval(
            "SELECT state FROM feedback_sessions WHERE tenant_id = $1 AND match_id = $2",
            tenant,
            match,
        )
        == "dropped"
    )


async def test_a_session_read_before_its_confirmation_is_held_until_it_arrives(
    service: AsgiFastStream, smtp: SmtpSink, db: asyncpg.Pool, producer: AIOKafkaProducer
) -> None:
    """`session-completed` and `match-confirmed` are different topics: a session of a match
    confirmed a moment ago can be read first. It waits for the confirmation, then asks both
    sides for feedback once, however often either event is replayed."""
    tenant = TENANT["held"]
    mentee, mentor = await enrol_pair(producer, tenant)
    match = f"m-{uuid.uuid4().hex[:8]}"
    await publish(producer, proposed(tenant, match, mentee, mentor, timedelta(days=3)), match)
    session = session_completed(tenant, match)
    read = await publish(producer, session, match)
    await eventually(lambda: consumed(db, read))
    await asyncio.sleep(0.5)
    assert await feedback_rows(db, tenant) == []  # held, not sent

    confirmation = confirmed_event(tenant, match, mentee, mentor)
    await publish(producer, confirmation, match)
    await eventually(lambda: feedback_mails(smtp, mentee) and feedback_mails(smtp, mentor))
    rows = await feedback_rows(db, tenant)
    assert [(r["recipient_id"], r["source_event_id"]) for r in rows] == sorted(
        [(mentee, session["id"]), (mentor, session["id"])]
    )

    # replays of both events add nothing
    await publish(producer, session, match)
    again = await publish(producer, confirmation, match)
    await eventually(lambda: consumed(db, again))
    await asyncio.sleep(1.0)
    assert len(await feedback_rows(db, tenant)) == 2
    assert len(feedback_mails(smtp, mentee)) == len(feedback_mails(smtp, mentor)) == 1


async def test_one_feedback_request_per_person_and_session_whatever_the_event_ids(
    service: AsgiFastStream, smtp: SmtpSink, db: asyncpg.Pool, producer: AIOKafkaProducer
) -> None:
    """An app that publishes a session twice (two event ids, one session id) asks for
    feedback once; another session of the same match asks again."""
    tenant = TENANT["same-session"]
    mentee, mentor = await enrol_pair(producer, tenant)
    match = f"m-{uuid.uuid4().hex[:8]}"
    await publish(producer, confirmed_event(tenant, match, mentee, mentor), match)
    first = session_completed(tenant, match, "s-1")
    await publish(producer, first, match)
    twice = await publish(producer, session_completed(tenant, match, "s-1"), match)
    await eventually(lambda: consumed(db, twice))
    await eventually(lambda: feedback_mails(smtp, mentee) and feedback_mails(smtp, mentor))
    await asyncio.sleep(1.0)
    rows = await feedback_rows(db, tenant)
    assert [(r["recipient_id"], r["source_event_id"]) for r in rows] == sorted(
        [(mentee, first["id"]), (mentor, first["id"])]
    )
    assert len(feedback_mails(smtp, mentee)) == len(feedback_mails(smtp, mentor)) == 1

    await publish(producer, session_completed(tenant, match, "s-2"), match)
    await eventually(lambda: len(feedback_mails(smtp, mentee)) == 2)
    rows = await feedback_rows(db, tenant)
    assert sorted((r["recipient_id"], r["session_id"]) for r in rows) == sorted(
        [(mentee, "s-1"), (mentor, "s-1"), (mentee, "s-2"), (mentor, "s-2")]
    )


# --- webhook destinations ------------------------------------------------------------------------


async def test_a_webhook_to_a_refused_address_fails_with_its_reason_and_sends_nothing(
    service: AsgiFastStream, db: asyncpg.Pool, producer: AIOKafkaProducer, topics: Topics
) -> None:
    """Two tenants whose webhook points at a loopback address not in WEBHOOK_ALLOWED_HOSTS
    (127.0.0.2; only 127.0.0.1 is allowed here), written straight into tenant_channels so no
    startup check saw them: one over plain http, one over https. Each delivery fails at its
    first attempt with the reason, is reported, and the receiver there gets nothing."""
    receiver = await WebhookSink(host="127.0.0.2").start()
    plain, loopback = TENANT["hook-plain"], TENANT["hook-loopback"]
    try:
        for tenant, url in (
            (plain, receiver.url),
            (loopback, receiver.url.replace("http://", "https://")),
        ):
            await db.execute(
                "INSERT INTO tenant_channels VALUES ($1, 'webhook', $2, $3)", tenant, url, SECRET
            )
        failed_from = await topics.end("notification-failed")
        for tenant in (plain, loopback):
            mentee, mentor = await enrol_pair(producer, tenant)
            match = f"m-{uuid.uuid4().hex[:8]}"
            await publish(
                producer,
                match_event(tenant, "match-ended", match, mentee, mentor, outcome="expired"),
                match,
            )

        refused = {}
        for tenant in (plain, loopback):
            refused[tenant] = await eventually(
                partial(
                    db.fetchrow,
                    "SELECT * FROM deliveries WHERE tenant_id = $1 AND state = 'failed'",
                    tenant,
                )
            )
        hint = " (refused unless listed in WEBHOOK_ALLOWED_HOSTS)"
        assert (refused[plain]["attempts"], refused[plain]["last_error"]) == (
            1,
            "webhook refused: https is required (plain http is only for hosts in "
            "WEBHOOK_ALLOWED_HOSTS, which 127.0.0.2 is not)",
        )
        assert (refused[loopback]["attempts"], refused[loopback]["last_error"]) == (
            1,
            "webhook refused: host 127.0.0.2 is a loopback address" + hint,
        )
        assert sum(receiver.counts.values()) == 0

        async def reported() -> dict[str, str]:
            records = await topics.since(failed_from, 1.0)
            found = {}
            for r in records:
                value = json.loads(r.value)
                if value["tenantid"] in (plain, loopback):
                    found[value["tenantid"]] = value["data"]["error"]
            return found if len(found) == 2 else {}

        errors = await eventually(reported, timeout=15)
        assert errors == {t: refused[t]["last_error"] for t in (plain, loopback)}
    finally:
        await receiver.stop()


# --- a relationship's life: check-ins, stalls, its end -------------------------------------------


def mails_of(smtp: SmtpSink, person_id: str, kind: str) -> list[EmailMessage]:
    return [
        parsed(m.content)
        for m in smtp.to(address(person_id))
        if f"X-Mentornet-Kind: {kind}\r\n".encode() in m.content
    ]


def smtp_all(smtp: SmtpSink, person_id: str) -> list[EmailMessage]:
    return [parsed(m.content) for m in smtp.to(address(person_id))]


def kinds_sent(smtp: SmtpSink, person_id: str) -> list[str]:
    return sorted(str(m["X-Mentornet-Kind"]) for m in smtp_all(smtp, person_id))


def plain(message: EmailMessage) -> str:
    return message.get_body(("plain",)).get_content()  # type: ignore[union-attr]


def feedback_requested(
    tenant: str, match_id: str, mentee: str, mentor: str, role: str, kind: str, checkin: int = 1
) -> dict[str, Any]:
    return match_event(
        tenant,
        "feedback-requested",
        match_id,
        mentee,
        mentor,
        person_id=mentee if role == "mentee" else mentor,
        role=role,
        kind=kind,
        checkin=checkin if kind == "checkin" else None,
    )


async def test_a_relationship_from_confirmation_to_an_early_end_mails_each_step_once(
    service: AsgiFastStream, smtp: SmtpSink, db: asyncpg.Pool, producer: AIOKafkaProducer
) -> None:
    """Check-ins to each person asked, a nudge to both when it stalls, and when the mentor
    ends it as not a fit: the mentee is told kindly (a new mentor follows), the mentor is not,
    and both are asked for closing feedback. Each in the reader's language, each once, however
    often the events are delivered."""
    tenant = TENANT["lifecycle"]
    mentee, mentor, match = person(), person(), f"m-{uuid.uuid4().hex[:8]}"
    key = f"{tenant}:prog-1"
    enrolments = [
        enrolment(tenant, mentee, role="mentee", languages=["fr"], name="Amélie"),
        enrolment(tenant, mentor, role="mentor", languages=["en"], name="Grace"),
    ]
    for ev in enrolments:
        await publish(producer, ev, key)
    start = [
        proposed(tenant, match, mentee, mentor, timedelta(days=3)),
        confirmed_event(tenant, match, mentee, mentor),
    ]
    await publish(producer, start[0], match)  # a confirmation read first drops the proposal
    await eventually(lambda: smtp.to(address(mentee)) and smtp.to(address(mentor)))
    await publish(producer, start[1], match)
    await eventually(
        lambda: (
            mails_of(smtp, mentee, "match-introduction")
            and mails_of(smtp, mentor, "match-introduction")
        )
    )

    during = [
        feedback_requested(tenant, match, mentee, mentor, "mentee", "checkin"),
        feedback_requested(tenant, match, mentee, mentor, "mentor", "checkin"),
        match_event(
            tenant, "relationship-stalled", match, mentee, mentor, days_since_last_session=21.4
        ),
    ]
    for ev in during:
        await publish(producer, ev, match)
    await eventually(
        lambda: all(
            mails_of(smtp, p, k)
            for p in (mentee, mentor)
            for k in ("checkin-request", "stall-nudge")
        )
    )

    end = [
        match_event(
            tenant,
            "match-ended",
            match,
            mentee,
            mentor,
            outcome="ended_early",
            ended_by=mentor,
            ended_by_role="mentor",
            reason="not_a_fit",
            relationship_days=40.0,
        ),
        feedback_requested(tenant, match, mentee, mentor, "mentee", "closing"),
        feedback_requested(tenant, match, mentee, mentor, "mentor", "closing"),
    ]
    for ev in end:
        await publish(producer, ev, match)
    await eventually(
        lambda: (
            mails_of(smtp, mentee, "ending-notice")
            and mails_of(smtp, mentee, "closing-feedback-request")
            and mails_of(smtp, mentor, "closing-feedback-request")
        )
    )

    expected = {
        mentee: [
            "checkin-request",
            "closing-feedback-request",
            "ending-notice",
            "match-introduction",
            "match-proposal",
            "stall-nudge",
        ],
        mentor: [  # who ended it is not told it ended
            "checkin-request",
            "closing-feedback-request",
            "match-introduction",
            "match-proposal",
            "stall-nudge",
        ],
    }

    async def settled() -> bool:  # nothing more arrives, for a second
        before = {p: kinds_sent(smtp, p) for p in expected}
        await asyncio.sleep(1.0)
        return before == {p: kinds_sent(smtp, p) for p in expected}

    await eventually(settled)
    assert {p: kinds_sent(smtp, p) for p in expected} == expected

    # each in the reader's language, naming the other person
    subjects = {
        (who, kind): str(mails_of(smtp, p, kind)[0]["Subject"])
        for who, p in (("mentee", mentee), ("mentor", mentor))
        for kind in expected[p]
        if kind not in ("match-proposal", "match-introduction")
    }
    assert subjects == {
        ("mentee", "checkin-request"): "Comment se passe votre mentorat avec Grace ?",
        ("mentee", "stall-nudge"): "Et si vous organisiez votre prochaine séance avec Grace ?",
        ("mentee", "ending-notice"): "Votre relation de mentorat avec Grace a pris fin",
        ("mentee", "closing-feedback-request"): "Comment s'est passé votre mentorat avec Grace ?",
        ("mentor", "checkin-request"): "How is your mentoring with Amélie going?",
        ("mentor", "stall-nudge"): "Time for your next session with Amélie?",
        ("mentor", "closing-feedback-request"): "How did your mentoring with Amélie go?",
    }
    for p, locale in ((mentee, "fr"), (mentor, "en")):
        assert {m["Content-Language"] for m in smtp_all(smtp, p)} == {locale}
    told = plain(mails_of(smtp, mentee, "ending-notice")[0])
    assert "Nous vous proposerons bientôt un nouveau mentor." in told
    assert "Vous recevrez bientôt une demande de bilan" in told
    assert "depuis 21 jours" in plain(mails_of(smtp, mentee, "stall-nudge")[0])
    assert "How far have you come" not in plain(mails_of(smtp, mentor, "checkin-request")[0])
    assert "Où en êtes-vous de chacun de vos objectifs ?" in plain(
        mails_of(smtp, mentee, "checkin-request")[0]
    )

    # every event delivered again (a replay, a producer retry): nothing more is sent
    async def replay() -> None:
        replayed = [await publish(producer, ev, key) for ev in enrolments]
        replayed += [await publish(producer, ev, match) for ev in start + during + end]
        for meta in replayed:
            await eventually(partial(consumed, db, meta))
        await asyncio.sleep(1.5)
        assert {p: kinds_sent(smtp, p) for p in expected} == expected

    await replay()  # the inbox drops them
    # and past the inbox (its rows purged after RETENTION_DAYS): the delivery ids are the same
    await db.execute("DELETE FROM inbox WHERE tenant_id = $1", tenant)
    await replay()
    rows = await db.fetch(
        "SELECT kind, state FROM deliveries WHERE tenant_id = $1 AND kind <> 'match-reminder'",
        tenant,
    )
    assert len(rows) == sum(len(kinds) for kinds in expected.values())
    assert {r["state"] for r in rows} == {"sent"}


async def test_relationship_events_read_out_of_order(
    service: AsgiFastStream, smtp: SmtpSink, db: asyncpg.Pool, producer: AIOKafkaProducer
) -> None:
    """matching's topics are read independently. A check-in read before match-confirmed
    (never published here) makes the match confirmed, so a session's feedback is asked at
    once; a check-in still waiting for its reader's contact is cancelled when the relationship
    ends; a stall or a check-in read after the end asks nobody anything; and the closing
    request read after a completed end congratulates."""
    tenant = TENANT["lifecycle-order"]
    mentee, mentor, match = person(), person(), f"m-{uuid.uuid4().hex[:8]}"
    key = f"{tenant}:prog-1"
    await publish(producer, enrolment(tenant, mentee, role="mentee", languages=["fr"]), key)
    checkin = feedback_requested(tenant, match, mentee, mentor, "mentor", "checkin")
    read = await publish(producer, checkin, match)  # the mentor's contact has not arrived
    await eventually(partial(consumed, db, read))
    row = await db.fetchrow(
        "SELECT state, confirmed, outcome FROM matches WHERE tenant_id = $1 AND match_id = $2",
        tenant,
        match,
    )
    assert dict(row) == {"state": "confirmed", "confirmed": True, "outcome": None}

    await publish(producer, session_completed(tenant, match), match)
    await eventually(lambda: feedback_mails(smtp, mentee))  # not held: the match is confirmed

    completed = match_event(
        tenant,
        "match-ended",
        match,
        mentee,
        mentor,
        outcome="completed",
        reason="goals_reached",
        relationship_days=90.0,
    )
    read = await publish(producer, completed, match)
    await eventually(partial(consumed, db, read))
    state = await db.fetchval(
        """SELECT state || ': ' || last_error FROM deliveries
           WHERE tenant_id = $1 AND kind = 'checkin-request'""",
        tenant,
    )
    assert state == "cancelled: relationship ended"
    row = await db.fetchrow(
        "SELECT state, confirmed, outcome FROM matches WHERE tenant_id = $1 AND match_id = $2",
        tenant,
        match,
    )
    assert dict(row) == {"state": "ended", "confirmed": True, "outcome": "completed"}

    late = [
        match_event(
            tenant, "relationship-stalled", match, mentee, mentor, days_since_last_session=30.0
        ),
        feedback_requested(tenant, match, mentee, mentor, "mentee", "checkin", checkin=2),
        feedback_requested(tenant, match, mentee, mentor, "mentee", "closing"),
        feedback_requested(tenant, match, mentee, mentor, "mentor", "closing"),
    ]
    metas = [await publish(producer, ev, match) for ev in late]
    for meta in metas:
        await eventually(partial(consumed, db, meta))
    closing = await eventually(lambda: mails_of(smtp, mentee, "closing-feedback-request"))
    assert str(closing[0]["Subject"]) == "Félicitations ! Comment s'est passé votre mentorat ?"

    # the mentor's contact arrives: what waited for it goes, what was cancelled does not
    await publish(producer, enrolment(tenant, mentor, role="mentor", languages=["en"]), key)
    await eventually(lambda: mails_of(smtp, mentor, "closing-feedback-request"))
    await asyncio.sleep(1.0)
    assert kinds_sent(smtp, mentor) == ["closing-feedback-request", "feedback-request"]
    assert kinds_sent(smtp, mentee) == ["closing-feedback-request", "feedback-request"]
    to_mentor = mails_of(smtp, mentor, "closing-feedback-request")[0]
    assert str(to_mentor["Subject"]).startswith("Congratulations! How did your mentoring with")
