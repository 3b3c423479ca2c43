"""The delivery worker's decisions for one claimed row, and the email it builds (no I/O)."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from services.notifications.errors import PermanentError, TransientError
from services.notifications.rendering import Rendered
from services.notifications.settings import NotificationSettings
from services.notifications.smtp import build_message
from services.notifications.worker import Claimed, DeliveryWorker

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
    ],
)
async def test_cancelled(worker: DeliveryWorker, overrides: dict[str, Any], error: str) -> None:
    outcome = await worker.deliver(claimed(**overrides))
    assert (outcome.state, outcome.error) == ("cancelled", error)


async def test_an_introduction_waits_for_the_partner(worker: DeliveryWorker) -> None:
    outcome = await worker.deliver(claimed(kind="match-introduction", partner_id="bob"))
    assert (outcome.state, outcome.waiting) == ("pending", True)


async def test_a_webhook_tenant_without_endpoint_fails_for_good(worker: DeliveryWorker) -> None:
    context = {
        "role": "mentee",
        "expires_at": "2030-01-01T00:00:00+00:00",
        "explanation": [],
        "match_id": "m-1",
        "program_id": "p",
        "score": 0.5,
    }
    outcome = await worker.deliver(claimed(channel="webhook", context=context))
    assert (outcome.state, outcome.attempted) == ("failed", True)


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
