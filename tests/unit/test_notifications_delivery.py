"""The delivery worker's decisions for one claimed row, and the email it builds (no I/O)."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from prometheus_client import CollectorRegistry

from services.notifications.errors import PermanentError, TransientError
from services.notifications.links import Link, LinkSigner
from services.notifications.rendering import Rendered
from services.notifications.settings import NotificationSettings
from services.notifications.smtp import build_message
from services.notifications.worker import Claimed, DeliveryWorker, answer_links

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def worker() -> DeliveryWorker:
    return DeliveryWorker(NotificationSettings(retry_base_seconds=10), CollectorRegistry())


def claimed(**overrides: Any) -> Claimed:
    row = {
        "id": uuid.uuid4(),
        "tenant_id": "acme",
        "source_event_id": "e-1",
        "recipient_id": "alice",
        "channel": "email",
        "kind": "match-proposal",
        "category": "proposals",
        "match_id": "m-1",
        "partner_id": None,
        "context": {},
        "correlation_id": None,
        "attempts": 0,
        "give_up_at": datetime.now(UTC) + timedelta(days=1),
        "last_error": None,
        "recipient_known": True,
        "recipient_name": "Alice",
        "recipient_email": "alice@example.com",
        "recipient_languages": ["en"],
        "recipient_timezone": "UTC",
        "partner_known": False,
        "partner_name": None,
        "partner_email": None,
        "partner_languages": None,
        "partner_timezone": None,
        "partner_expertise": None,
        "partner_goals": None,
        "endpoint": None,
        "secret": None,
        "opted_out": False,
        **overrides,
    }
    return Claimed(row, time.monotonic() + 60)


async def test_past_its_deadline_a_row_fails(worker: DeliveryWorker) -> None:
    past = datetime.now(UTC) - timedelta(seconds=1)
    outcome = await worker.deliver(claimed(give_up_at=past, last_error="waiting for contact"))
    assert (outcome.state, outcome.error) == ("failed", "expired: waiting for contact")


async def test_an_unknown_recipient_is_waited_for(worker: DeliveryWorker) -> None:
    outcome = await worker.deliver(claimed(recipient_known=False, recipient_email=None))
    assert (outcome.state, outcome.waiting, outcome.attempted) == ("pending", True, False)
    assert outcome.next_attempt_at and outcome.next_attempt_at > datetime.now(UTC)


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"recipient_email": None, "recipient_name": None}, "recipient erased"),
        ({"opted_out": True}, "opted out of proposals"),
        (
            {"kind": "match-introduction", "partner_id": "bob", "partner_known": True},
            "partner erased",
        ),
        ({"partner_id": "bob", "partner_known": True}, "partner erased"),  # a proposal
    ],
)
async def test_cancelled(worker: DeliveryWorker, overrides: dict[str, Any], error: str) -> None:
    outcome = await worker.deliver(claimed(**overrides))
    assert (outcome.state, outcome.error) == ("cancelled", error)


@pytest.mark.parametrize("kind", ["match-proposal", "match-reminder", "match-introduction"])
async def test_what_names_the_partner_waits_for_them(worker: DeliveryWorker, kind: str) -> None:
    outcome = await worker.deliver(claimed(kind=kind, partner_id="bob"))
    assert (outcome.state, outcome.waiting) == ("pending", True)


PROPOSAL = {
    "role": "mentee",
    "expires_at": "2030-01-01T00:00:00+00:00",
    "explanation": [
        {
            "criterion": "languages",
            "contribution": 0.2,
            "reason": "You both speak French",
            "facts": {"shared": ["fr"]},
        }
    ],
    "match_id": "m-1",
    "program_id": "p",
    "score": 0.5,
}
BOB = {
    "partner_id": "bob",
    "partner_known": True,
    "partner_name": "Bob Martin",
    "partner_email": "bob@example.com",
    "partner_languages": ["fr", "en"],
    "partner_timezone": "Europe/Paris",
    "partner_expertise": '[{"topic": "sql", "level": 5}]',  # jsonb may come back as text
    "partner_goals": None,
}


async def test_a_webhook_tenant_without_endpoint_fails_for_good(worker: DeliveryWorker) -> None:
    outcome = await worker.deliver(claimed(channel="webhook", context=PROPOSAL, **BOB))
    assert (outcome.state, outcome.attempted) == ("failed", True)


def test_a_proposal_names_and_describes_the_partner_but_hides_their_address(
    worker: DeliveryWorker,
) -> None:
    now = datetime(2029, 12, 30, tzinfo=UTC)
    rendered, links = worker._render(claimed(context=PROPOSAL, **BOB), False, now)
    assert rendered.subject == "Bob Martin is proposed as your mentor: will you accept?"
    assert "- Expertise: sql (recognised expert)" in rendered.text
    assert "- Time zone: Europe/Paris (currently UTC+01:00)" in rendered.text
    assert "- Languages: You both speak French" in rendered.text  # the reasons, to the mentee
    assert "bob@example.com" not in rendered.text + rendered.html
    assert set(links) == {"accept", "decline"}
    assert f"Accept: {links['accept']}" in rendered.text
    assert "mentoring app" not in rendered.text + rendered.html


@pytest.mark.parametrize(
    ("kind", "shown"),
    [
        ("match-proposal", False),
        ("match-reminder", False),
        ("match-introduction", True),  # both accepted
        ("stall-nudge", True),  # a relationship in progress: they have met
        ("checkin-request", False),
    ],
)
def test_the_partners_address_reaches_only_the_templates_that_give_it(
    monkeypatch: pytest.MonkeyPatch, kind: str, shown: bool
) -> None:
    worker = DeliveryWorker(NotificationSettings(), CollectorRegistry())
    given: list[dict[str, Any]] = []
    monkeypatch.setattr(worker.templates, "render", lambda k, loc, values: given.append(values))
    context = {**PROPOSAL, "checkin": 1, "quiet_days": 3}
    worker._render(claimed(kind=kind, context=context, **BOB), False, datetime.now(UTC))
    assert ("email" in given[0]["partner"]) is shown


async def test_a_proposal_planned_before_partners_were_named_is_sent_without(
    worker: DeliveryWorker,
) -> None:
    """Rows already pending when proposals began to name the partner have no partner_id."""
    old = {**PROPOSAL, "explanation": [{"criterion": "languages", "reason": "You both speak"}]}
    row = claimed(channel="webhook", context=old)
    assert (await worker.deliver(row)).state == "failed"  # rendered, then no endpoint
    rendered, _ = worker._render(claimed(context=old), False, datetime.now(UTC))
    assert rendered.subject == "A mentor is proposed to you: will you accept?"
    assert "Why this match" not in rendered.text  # no facts: no reasons


def test_an_introduction_gives_the_partners_address(worker: DeliveryWorker) -> None:
    context = {"role": "mentee", "match_id": "m-1", "program_id": "p"}
    row = claimed(kind="match-introduction", category="introductions", context=context, **BOB)
    rendered, links = worker._render(row, False, datetime.now(UTC))
    assert "bob@example.com" in rendered.text and links == {}


async def test_the_webhook_data_carries_the_answer_links(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    worker = DeliveryWorker(NotificationSettings(), CollectorRegistry())
    sent: list[bytes] = []

    async def send(url: str, secret: str, notification_id: str, body: bytes) -> None:
        sent.append(body)

    monkeypatch.setattr(worker.webhooks, "send", send)
    row = claimed(
        channel="webhook",
        endpoint="https://app.example.com/hook",
        secret="s" * 32,
        context=PROPOSAL,
        **BOB,
    )
    outcome = await worker.deliver(row)
    assert outcome.state == "sent"
    data = json.loads(sent[0])["data"]
    assert set(data["links"]) == {"accept", "decline"}
    assert data["links"]["accept"] in json.loads(sent[0])["text"]
    assert data["explanation"][0]["facts"] == {"shared": ["fr"]}


# --- answer links ----------------------------------------------------------------------------

SIGNER = LinkSigner(["k" * 32])
BASE = "https://mentoring.example.org"
UNTIL = datetime(2030, 2, 1, tzinfo=UTC)


def read(url: str) -> tuple[Link, dict[str, list[str]]]:
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{BASE}/answer"
    query = parse_qs(parts.query)
    return SIGNER.read(query["t"][0], now=datetime(2029, 1, 1, tzinfo=UTC)), query


@pytest.mark.parametrize("kind", ["match-proposal", "match-reminder"])
def test_a_proposal_is_answered_by_accept_and_decline_until_it_expires(kind: str) -> None:
    links = answer_links(kind, "acme", "alice", PROPOSAL, SIGNER, BASE, UNTIL)
    assert set(links) == {"accept", "decline"}
    for choice, url in links.items():
        link, query = read(url)
        assert query["choice"] == [choice]
        assert link == Link("acme", "m-1", "alice", "respond", datetime(2030, 1, 1, tzinfo=UTC))


@pytest.mark.parametrize(
    ("kind", "context", "action"),
    [
        ("checkin-request", {"checkin": 2}, "checkin:2"),
        ("feedback-request", {"session_id": "s-9"}, "checkin:session-s-9"),
        ("closing-feedback-request", {"outcome": "completed"}, "closing"),
    ],
)
def test_a_feedback_request_links_to_its_form(
    kind: str, context: dict[str, Any], action: str
) -> None:
    links = answer_links(kind, "acme", "alice", {"match_id": "m-1", **context}, SIGNER, BASE, UNTIL)
    assert list(links) == ["feedback"]
    link, query = read(links["feedback"])
    assert link == Link("acme", "m-1", "alice", action, UNTIL) and "choice" not in query


@pytest.mark.parametrize(
    "kind", ["match-introduction", "next-proposal", "stall-nudge", "ending-notice"]
)
def test_other_kinds_ask_nothing(kind: str) -> None:
    assert answer_links(kind, "acme", "alice", {"match_id": "m-1"}, SIGNER, BASE, UNTIL) == {}


def test_retry_schedule_and_limits(worker: DeliveryWorker) -> None:
    transient = worker._retry(claimed(attempts=0), TransientError("421 later"))
    assert transient.state == "pending" and transient.attempted
    assert transient.next_attempt_at is not None
    delay = (transient.next_attempt_at - datetime.now(UTC)).total_seconds()
    assert 4.5 <= delay <= 10.5  # first retry: [base/2, base]
    asked = worker._retry(claimed(), TransientError("HTTP 429", retry_after=120))
    assert asked.next_attempt_at and asked.next_attempt_at > datetime.now(UTC) + timedelta(
        seconds=119
    )
    assert worker._retry(claimed(), PermanentError("HTTP 400")).state == "failed"
    last = worker._retry(claimed(attempts=7), TransientError("again"))
    assert (last.state, last.error) == ("failed", "again")  # 8th attempt of 8


def test_errors_quoting_an_address_are_redacted(worker: DeliveryWorker) -> None:
    outcome = worker._retry(claimed(), PermanentError("550 <alice@example.com> unknown"))
    assert outcome.error == "550 <[email]> unknown"


def parse(raw: bytes) -> EmailMessage:
    message = message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


RENDERED = Rendered(
    "fr", "Votre mentor : réponse attendue", "Bonjour Zoë\n", "<p>Bonjour Zoë</p>\n"
)


def test_email_has_both_parts_and_a_deterministic_message_id() -> None:
    raw = build_message(
        notification_id="n-1",
        sender="mentornet <no-reply@mentornet.test>",
        to_name="Zoë Durand",
        to_email="zoe@example.com",
        rendered=RENDERED,
        kind="match-proposal",
    )
    message = parse(raw)
    assert message["Message-ID"] == "<n-1@mentornet>"
    assert message["Subject"] == "Votre mentor : réponse attendue"
    assert message["To"].addresses[0].display_name == "Zoë Durand"
    assert message["Content-Language"] == "fr"
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert (text, html) == ("Bonjour Zoë\r\n", "<p>Bonjour Zoë</p>\r\n")  # CRLF on the wire
    assert all(byte < 128 for byte in raw)  # 7-bit clean for any relay


def test_a_name_cannot_add_headers() -> None:
    raw = build_message(
        notification_id="n-2",
        sender="mentornet <no-reply@mentornet.test>",
        to_name='Eve "x"\r\nBcc: spy@evil.test',
        to_email="eve@example.com",
        rendered=RENDERED,
        kind="match-proposal",
    )
    message = parse(raw)
    assert message["Bcc"] is None
    assert [a.addr_spec for a in message["To"].addresses] == ["eve@example.com"]


def test_an_address_with_markup_is_refused() -> None:
    with pytest.raises(PermanentError):
        build_message(
            notification_id="n-3",
            sender="mentornet <no-reply@mentornet.test>",
            to_name="",
            to_email="a@b.c>\r\nBcc: x@y.z",
            rendered=RENDERED,
            kind="match-proposal",
        )
