"""The notifications domain: which notification each event causes, to whom, and when.

Pure functions only (no I/O), so the rules are unit-tested without a broker or a database.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from shared.contract.envelope import CloudEvent
from shared.contract.events import (
    FeedbackRequested,
    MatchConfirmed,
    MatchEnded,
    MatchProposed,
    NotificationOutcome,
    RelationshipStalled,
    SessionCompleted,
)

SOURCE = "mentornet/notifications"
_IDS = uuid.UUID("5e1d0c2a-7b4f-4a51-9d63-6e6f74696679")

# kind -> category (what a person can opt out of)
CATEGORIES: dict[str, str] = {
    "match-proposal": "proposals",
    "match-reminder": "reminders",
    "match-introduction": "introductions",
    "next-proposal": "proposals",
    "feedback-request": "feedback",
    "checkin-request": "feedback",
    "closing-feedback-request": "feedback",
    "stall-nudge": "nudges",
    "ending-notice": "relationship",
}
# kinds that make no sense without the other person's contact: a proposal and its reminder say
# who is proposed, an introduction also gives their address
NEEDS_PARTNER = frozenset({"match-proposal", "match-reminder", "match-introduction"})
# kinds about a relationship in progress: pointless once it ended (closing requests are not)
DURING_RELATIONSHIP = frozenset({"checkin-request", "stall-nudge"})
# outcomes of match-ended that only a confirmed match can have
RELATIONSHIP_ENDS = frozenset({"completed", "ended_early"})


def notification_id(
    tenant_id: str, source_event_id: str, recipient_id: str, channel: str, kind: str
) -> uuid.UUID:
    """Deterministic: the same cause always yields the same id, hence the same Message-ID and
    Idempotency-Key when a delivery is sent again after a crash. Event ids are unique per tenant
    only (the inbox is keyed by tenant), so the tenant is part of the name."""
    return uuid.uuid5(_IDS, f"{tenant_id}|{source_event_id}|{recipient_id}|{channel}|{kind}")


@dataclass(frozen=True)
class Planned:
    """A notification an event calls for, before the tenant's channels are known."""

    kind: str
    recipient_id: str
    context: dict[str, Any]
    match_id: str | None = None
    partner_id: str | None = None
    not_before: datetime | None = None  # None: now
    give_up_at: datetime | None = None  # None: now + the contact wait

    @property
    def category(self) -> str:
        return CATEGORIES[self.kind]


@dataclass(frozen=True)
class Policy:
    """Timing rules from the settings."""

    reminder_before: timedelta = timedelta(hours=24)
    contact_wait: timedelta = timedelta(days=7)


def explanation(data: MatchProposed) -> list[dict[str, Any]]:
    """What notifications keeps of a proposal's explanation, for emails and the answer page to
    write each reader's reasons from (reading.reasons): the facts, and matching's English
    sentence for consumers of the webhook's data that still show it."""
    items = sorted(data.explanation, key=lambda i: i.contribution, reverse=True)
    return [
        {
            "criterion": i.criterion,
            "contribution": i.contribution,
            "reason": i.reason,
            "facts": i.facts,
        }
        for i in items
    ]


def for_proposal(data: MatchProposed, policy: Policy, now: datetime) -> list[Planned]:
    """The proposal to both sides now, and a reminder to both `reminder_before` the deadline
    (dropped later for whoever answers), each naming the other. No reminder when that moment
    has already passed."""
    base = {
        "match_id": data.match_id,
        "program_id": data.program_id,
        "score": data.score,
        "expires_at": data.expires_at.isoformat(),
        "explanation": explanation(data),
    }
    parties = (
        ("mentee", data.mentee_id, data.mentor_id),
        ("mentor", data.mentor_id, data.mentee_id),
    )
    planned = [
        Planned(
            "match-proposal",
            person,
            {**base, "role": role},
            match_id=data.match_id,
            partner_id=partner,
            give_up_at=data.expires_at,
        )
        for role, person, partner in parties
    ]
    remind_at = data.expires_at - policy.reminder_before
    if remind_at > now:
        planned += [
            Planned(
                "match-reminder",
                person,
                {**base, "role": role},
                match_id=data.match_id,
                partner_id=partner,
                not_before=remind_at,
                give_up_at=data.expires_at,
            )
            for role, person, partner in parties
        ]
    return planned


def for_confirmation(data: MatchConfirmed) -> list[Planned]:
    """An introduction to both, each with the other's name and address (read when sent)."""
    base = {"match_id": data.match_id, "program_id": data.program_id}
    return [
        Planned(
            "match-introduction",
            data.mentee_id,
            {**base, "role": "mentee"},
            data.match_id,
            data.mentor_id,
        ),
        Planned(
            "match-introduction",
            data.mentor_id,
            {**base, "role": "mentor"},
            data.match_id,
            data.mentee_id,
        ),
    ]


def for_ending(data: MatchEnded) -> list[Planned]:
    """A declined or expired proposal: the mentee hears the next one is on its way. A
    relationship ended early: the other person is told (see `_told_of_the_end`). A completed
    one calls for nothing here: its closing feedback request congratulates both."""
    context = {"match_id": data.match_id, "program_id": data.program_id, "outcome": data.outcome}
    if data.outcome in ("declined", "expired"):
        return [Planned("next-proposal", data.mentee_id, context, data.match_id)]
    if data.outcome == "ended_early":
        return _told_of_the_end(data, context)
    return []


def _told_of_the_end(data: MatchEnded, base: dict[str, Any]) -> list[Planned]:
    """Tell whoever did not end it that the relationship has ended (both when the program did,
    or when nobody is named). Who ended it already knows; everyone gets matching's closing
    feedback request anyway. The mentee hears a new mentor will be proposed when the mentor
    ended it or it was not a fit (matching puts them back on the waiting list then)."""
    ender: str | None = data.ended_by_role
    if ender is None and data.ended_by is not None:
        ender = {data.mentee_id: "mentee", data.mentor_id: "mentor"}.get(data.ended_by)
    planned = []
    for role, person, partner in (
        ("mentee", data.mentee_id, data.mentor_id),
        ("mentor", data.mentor_id, data.mentee_id),
    ):
        if role == ender or person == data.ended_by:
            continue
        context = {
            **base,
            "role": role,
            "reason": data.reason,
            "ended_by_role": ender or "program",
            "new_mentor": role == "mentee" and _rematched(data, ender),
        }
        planned.append(Planned("ending-notice", person, context, data.match_id, partner))
    return planned


def _rematched(data: MatchEnded, ender: str | None) -> bool:
    """Whether matching proposes the mentee a new mentor: as the event says, or, from a
    publisher that does not say it, when the mentor ended it or it was not a fit."""
    if data.mentee_rematched is not None:
        return data.mentee_rematched
    return data.reason == "not_a_fit" or ender == "mentor"


def _partner(mentee_id: str, mentor_id: str, role: str) -> str:
    return mentor_id if role == "mentee" else mentee_id


def for_feedback_request(data: FeedbackRequested, ended: str | None = None) -> list[Planned]:
    """One request to the person asked, naming the other. A closing request congratulates a
    completed relationship and stays neutral otherwise: how it ended is in the request, or
    (`ended`) on match-ended when that was read already. A person who is not the match's `role` gets nothing: the
    request would name a stranger's partner."""
    if data.person_id != (data.mentee_id if data.role == "mentee" else data.mentor_id):
        return []
    context: dict[str, Any] = {
        "match_id": data.match_id,
        "program_id": data.program_id,
        "role": data.role,
    }
    if data.kind == "checkin":
        kind = "checkin-request"
        context["checkin"] = data.checkin
    else:
        kind = "closing-feedback-request"
        outcome = data.outcome or ended  # said by the request, or read on match-ended
        context["outcome"] = outcome if outcome in RELATIONSHIP_ENDS else None
    partner = _partner(data.mentee_id, data.mentor_id, data.role)
    return [Planned(kind, data.person_id, context, data.match_id, partner)]


def for_stall(data: RelationshipStalled) -> list[Planned]:
    """A kind nudge to both, each naming the other. Days are whole (at least one): the reader
    wants an order of magnitude, not a fraction."""
    base = {
        "match_id": data.match_id,
        "program_id": data.program_id,
        "quiet_days": max(1, round(data.days_since_last_session)),
    }
    return [
        Planned(
            "stall-nudge",
            person,
            {**base, "role": role},
            data.match_id,
            _partner(data.mentee_id, data.mentor_id, role),
        )
        for role, person in (("mentee", data.mentee_id), ("mentor", data.mentor_id))
    ]


@dataclass(frozen=True)
class MatchParties:
    mentee_id: str
    mentor_id: str
    program_id: str


@dataclass(frozen=True)
class KnownMatch:
    """What notifications knows of a match. `confirmed` stays true once the match is confirmed,
    whatever comes next (`state` moves on to "ended"); `outcome` is match-ended's, once read."""

    parties: MatchParties
    state: str
    confirmed: bool
    outcome: str | None = None

    @property
    def ended(self) -> bool:
        return self.state == "ended"


def implies_confirmation(event: CloudEvent) -> bool:
    """Whether an event says its match was confirmed, whatever order the topics are read in:
    check-ins, stalls and relationship ends only happen to confirmed matches."""
    if event.type in ("match-confirmed", "feedback-requested", "relationship-stalled"):
        return True
    return event.type == "match-ended" and event.data.outcome in RELATIONSHIP_ENDS


SessionFate = Literal["feedback", "hold", "unknown_match", "not_confirmed"]


def session_fate(match: KnownMatch | None) -> SessionFate:
    """What a completed session calls for. Feedback requests name the partner, so they are for
    confirmed matches only. A session of a match still proposed is held: its confirmation is on
    another topic and may simply not have been read yet (released then, dropped if the match
    ends unconfirmed). A match never heard of stays ignored: it is no match of ours."""
    if match is None:
        return "unknown_match"
    if match.confirmed:
        return "feedback"
    return "hold" if match.state == "proposed" else "not_confirmed"


@dataclass(frozen=True)
class Session:
    """A completed session, as far as its feedback requests need it."""

    match_id: str
    session_id: str
    duration_minutes: int

    @classmethod
    def of(cls, data: SessionCompleted) -> Session:
        return cls(data.match_id, data.session_id, data.duration_minutes)


def for_session(session: Session, match: MatchParties) -> list[Planned]:
    """A feedback request to both sides of the (confirmed) match."""
    base = {
        "match_id": session.match_id,
        "program_id": match.program_id,
        "session_id": session.session_id,
        "duration_minutes": session.duration_minutes,
    }
    return [
        Planned(
            "feedback-request",
            match.mentee_id,
            {**base, "role": "mentee"},
            session.match_id,
            match.mentor_id,
        ),
        Planned(
            "feedback-request",
            match.mentor_id,
            {**base, "role": "mentor"},
            session.match_id,
            match.mentee_id,
        ),
    ]


@dataclass(frozen=True)
class Cause:
    """What a delivery keeps of the event that caused it: the event itself, or a session held
    until its match was confirmed (then released by another event, but still its own cause,
    so a replay of either adds nothing)."""

    tenant_id: str
    event_id: str
    correlation_id: str
    traceparent: str | None = None

    @classmethod
    def of(cls, event: CloudEvent) -> Cause:
        return cls(event.tenantid, event.id, event.correlation_id, event.traceparent)


@dataclass(frozen=True)
class NewDelivery:
    """A row of `deliveries` to insert."""

    id: uuid.UUID
    tenant_id: str
    source_event_id: str
    channel: str
    planned: Planned
    correlation_id: str
    next_attempt_at: datetime
    give_up_at: datetime
    traceparent: str | None = None


def deliveries_for(
    event: CloudEvent | Cause,
    planned: Iterable[Planned],
    channels: Sequence[str],
    policy: Policy,
    now: datetime,
) -> list[NewDelivery]:
    """One row per planned notification and tenant channel."""
    cause = event if isinstance(event, Cause) else Cause.of(event)
    return [
        NewDelivery(
            id=notification_id(cause.tenant_id, cause.event_id, p.recipient_id, channel, p.kind),
            tenant_id=cause.tenant_id,
            source_event_id=cause.event_id,
            channel=channel,
            planned=p,
            correlation_id=cause.correlation_id,
            traceparent=cause.traceparent,
            next_attempt_at=p.not_before or now,
            give_up_at=p.give_up_at or now + policy.contact_wait,
        )
        for p in planned
        for channel in channels
    ]


def choose_locale(languages: Sequence[str] | None, available: Iterable[str]) -> str:
    """The first of the person's languages we have templates for ("fr-CA" counts as "fr")."""
    have = set(available)
    for language in languages or ():
        code = language.strip().lower().replace("_", "-").split("-")[0]
        if code in have:
            return code
    return "en"


def backoff_seconds(
    attempt: int, base: float, cap: float, rng: random.Random | None = None
) -> float:
    """Delay before retry number `attempt` (1 = after the first failure): exponential with
    "equal jitter", i.e. uniform in [d/2, d] for d = min(cap, base * 2^(attempt-1)). Jitter keeps
    replicas from retrying in lockstep against a recovering server; the lower half keeps the
    schedule growing, so a struggling server really gets more and more room."""
    delay = min(cap, base * 2 ** max(attempt - 1, 0))
    return delay / 2 + (rng or random).uniform(0, delay / 2)


# --- outcomes -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What became of one claimed delivery. state: sent, pending (retry or wait), failed,
    cancelled. `attempted` counts towards the attempt limit (a wait for a contact does not)."""

    id: uuid.UUID
    state: str
    attempted: bool = False
    next_attempt_at: datetime | None = None
    error: str | None = None
    waiting: bool = False  # for a contact: woken as soon as it arrives


@dataclass(frozen=True)
class Finished:
    """A delivery that just reached `sent` or `failed`: what its outcome event tells."""

    id: uuid.UUID
    state: str
    tenant_id: str
    recipient_id: str
    channel: str
    kind: str
    source_event_id: str
    attempts: int
    error: str | None
    correlation_id: str | None

    def event(self, now: datetime | None = None) -> CloudEvent:
        """notification-delivered / notification-failed; the id derives from the delivery, so a
        row finished twice (it cannot: the update is guarded by state) would still be one event."""
        event_type = "notification-delivered" if self.state == "sent" else "notification-failed"
        return CloudEvent(
            id=str(uuid.uuid5(self.id, event_type)),
            source=SOURCE,
            type=event_type,
            time=now or datetime.now(UTC),
            tenantid=self.tenant_id,
            correlationid=self.correlation_id,
            data=NotificationOutcome(
                notification_id=str(self.id),
                kind=self.kind,
                recipient_id=self.recipient_id,
                channel=self.channel,
                source_event_id=self.source_event_id,
                attempts=self.attempts,
                error=self.error,
            ),
        )
