"""Retry timing, rate limiting, error classification and what each event plans."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import aiosmtplib
import pytest

from services.notifications.domain import (
    Cause,
    KnownMatch,
    MatchParties,
    Policy,
    Session,
    backoff_seconds,
    deliveries_for,
    for_ending,
    for_proposal,
    for_session,
    notification_id,
    session_fate,
)
from services.notifications.smtp import classify, tenant_server
from shared.contract.envelope import CloudEvent
from shared.contract.events import ExplanationItem, MatchEnded, MatchProposed
from shared.runtime.rate_limit import TokenBucket

pytestmark = pytest.mark.unit


def test_backoff_doubles_with_jitter_in_the_upper_half_and_is_capped() -> None:
    rng = random.Random(7)
    for attempt in range(1, 12):
        nominal = min(300.0, 2.0 * 2 ** (attempt - 1))
        for _ in range(50):
            delay = backoff_seconds(attempt, 2.0, 300.0, rng)
            assert nominal / 2 <= delay <= nominal
    # the lower bound doubles, so the schedule keeps growing until the cap
    assert [min(300.0, 2.0 * 2 ** (a - 1)) / 2 for a in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]


def test_backoff_jitter_spreads_retries() -> None:
    delays = {round(backoff_seconds(5, 1.0, 60.0), 6) for _ in range(20)}
    assert len(delays) > 10


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=10, burst=3, clock=clock)
    assert [bucket.try_acquire(0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.try_acquire(0) is None  # nothing taken when the wait is too long
    assert bucket.retry_in() == pytest.approx(0.1)
    assert bucket.try_acquire(0.5) == pytest.approx(0.1)
    clock.now += 1.0  # a second later: the burst is back
    assert [bucket.try_acquire(0) for _ in range(3)] == [0.0, 0.0, 0.0]


def test_unlimited_bucket_never_waits() -> None:
    bucket = TokenBucket(rate=0)
    assert all(bucket.try_acquire(0) == 0.0 for _ in range(1000))


@pytest.mark.parametrize(
    ("error", "permanent"),
    [
        (
            aiosmtplib.SMTPRecipientsRefused([aiosmtplib.SMTPRecipientRefused(550, "no", "a@b.c")]),
            True,
        ),
        (
            aiosmtplib.SMTPRecipientsRefused(
                [aiosmtplib.SMTPRecipientRefused(421, "later", "a@b.c")]
            ),
            False,
        ),
        (aiosmtplib.SMTPDataError(554, "spam"), True),
        (aiosmtplib.SMTPDataError(451, "try later"), False),
        (aiosmtplib.SMTPSenderRefused(550, "not allowed", "x@y.z"), False),  # our config
        (aiosmtplib.SMTPAuthenticationError(535, "bad login"), False),
        (aiosmtplib.SMTPServerDisconnected("gone"), False),
        (ConnectionRefusedError(), False),
    ],
)
def test_smtp_errors_are_classified(error: Exception, permanent: bool) -> None:
    assert classify(error).permanent is permanent


def test_tenant_smtp_endpoint() -> None:
    server = tenant_server("smtp://bot@mail.acme.test:2525?starttls=true", "pw")
    assert (server.host, server.port, server.username, server.password) == (
        "mail.acme.test",
        2525,
        "bot",
        "pw",
    )
    assert server.starttls is True
    assert tenant_server("smtps://mail.acme.test", None).port == 465


NOW = datetime(2030, 1, 1, tzinfo=UTC)


LANGUAGES = ExplanationItem(
    criterion="languages",
    weight=0.2,
    contribution=0.2,
    reason="You both speak French",
    facts={"shared": ["fr"]},
)
FROM_V1 = ExplanationItem(criterion="load", weight=0.1, contribution=0.1, reason="Has 1 of 2")


def proposal(expires_in: timedelta) -> MatchProposed:
    return MatchProposed(
        match_id="m-1",
        program_id="p-1",
        mentee_id="alice",
        mentor_id="bob",
        score=0.7,
        explanation=[FROM_V1, LANGUAGES],
        expires_at=NOW + expires_in,
    )


def test_proposal_plans_both_sides_and_reminders_before_the_deadline() -> None:
    planned = for_proposal(proposal(timedelta(hours=72)), Policy(), NOW)
    assert sorted((p.kind, p.recipient_id, p.partner_id) for p in planned) == [
        ("match-proposal", "alice", "bob"),  # each names the other
        ("match-proposal", "bob", "alice"),
        ("match-reminder", "alice", "bob"),
        ("match-reminder", "bob", "alice"),
    ]
    reminder = next(p for p in planned if p.kind == "match-reminder")
    assert reminder.not_before == NOW + timedelta(hours=48)
    # what each reader's reasons are written from, largest contribution first
    assert planned[0].context["explanation"] == [
        {
            "criterion": "languages",
            "contribution": 0.2,
            "reason": "You both speak French",
            "facts": {"shared": ["fr"]},
        },
        {"criterion": "load", "contribution": 0.1, "reason": "Has 1 of 2", "facts": {}},
    ]


def test_no_reminder_when_the_deadline_is_too_close() -> None:
    planned = for_proposal(proposal(timedelta(hours=12)), Policy(), NOW)
    assert {p.kind for p in planned} == {"match-proposal"}


def test_only_declined_or_expired_tell_the_mentee() -> None:
    ended = {
        outcome: for_ending(
            MatchEnded(match_id="m", program_id="p", mentee_id="a", mentor_id="b", outcome=outcome)
        )
        for outcome in ("declined", "expired", "cancelled")
    }
    assert [p.recipient_id for p in ended["declined"]] == ["a"]
    assert [p.kind for p in ended["expired"]] == ["next-proposal"]
    assert ended["cancelled"] == []


def test_delivery_ids_are_deterministic_per_event_recipient_channel_and_kind() -> None:
    event = CloudEvent.new(
        "match-proposed", "test", "acme", proposal(timedelta(hours=72)), id="e-1"
    )
    planned = for_proposal(event.data, Policy(), NOW)
    rows = deliveries_for(event, planned, ["email", "webhook"], Policy(), NOW)
    assert len({r.id for r in rows}) == len(rows) == 8
    again = deliveries_for(event, planned, ["email", "webhook"], Policy(), NOW)
    assert [r.id for r in rows] == [r.id for r in again]
    assert rows[0].id == notification_id("acme", "e-1", "alice", "email", "match-proposal")
    assert notification_id("other", "e-1", "alice", "email", "match-proposal") != rows[0].id


def test_feedback_only_for_confirmed_matches_held_while_only_proposed() -> None:
    parties = MatchParties("a", "b", "p")
    assert session_fate(None) == "unknown_match"
    assert session_fate(KnownMatch(parties, "proposed", confirmed=False)) == "hold"
    assert session_fate(KnownMatch(parties, "confirmed", confirmed=True)) == "feedback"
    # confirmed, then ended (cancelled): the session did take place
    assert session_fate(KnownMatch(parties, "ended", confirmed=True)) == "feedback"
    # declined or expired: it never was a relationship
    assert session_fate(KnownMatch(parties, "ended", confirmed=False)) == "not_confirmed"


def test_a_released_session_keeps_its_own_event_as_cause() -> None:
    """Held, then released by the confirmation: the delivery ids are those the session event
    would have had, so replaying either event adds nothing."""
    planned = for_session(Session("m", "s-1", 30), MatchParties("a", "b", "p"))
    assert [(p.recipient_id, p.partner_id) for p in planned] == [("a", "b"), ("b", "a")]
    rows = deliveries_for(Cause("acme", "e-9", "corr-1"), planned, ["email"], Policy(), NOW)
    assert [r.id for r in rows] == [
        notification_id("acme", "e-9", person, "email", "feedback-request") for person in "ab"
    ]
    assert {(r.source_event_id, r.correlation_id) for r in rows} == {("e-9", "corr-1")}
