"""Payload (`data`) models of every v1 event, ingress and egress.

Unknown extra fields are ignored, not rejected, so publishers can add fields before we read them
(forward compatibility). Every limit here is part of the contract and listed in docs/contract.md.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from shared.contract.codes import ISO_639_1, iana_timezones

Identifier = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@/-]*$")
]
ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
FreeText = Annotated[str, StringConstraints(max_length=2000)]
Topic = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Email = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        max_length=254,
        pattern=r"^[^@\s<>\"',;]+@[^@\s<>\"',;]+\.[^@\s<>\"',;]+$",
    ),
]


def _language(code: str) -> str:
    code = code.strip().lower()
    if code not in ISO_639_1:
        raise ValueError(
            f"'{code}' is not an ISO 639-1 language code (two letters, e.g. 'en', 'fr')"
        )
    return code


def _timezone(name: str) -> str:
    if name not in iana_timezones():
        raise ValueError(f"'{name}' is not an IANA timezone name (e.g. 'Europe/Paris')")
    return name


FIRST_YEAR, LAST_YEAR = 1900, 9999  # the range of times the contract accepts (in UTC)


def _timestamp(value: datetime) -> datetime:
    """A time that can be stored and compared: with a UTC offset, within the documented years."""
    offset = value.utcoffset()
    if offset is None:
        raise ValueError("needs a UTC offset (e.g. 'Z' or '+01:00'), as RFC 3339 requires")
    try:
        year = (value.replace(tzinfo=None) - offset).year
    except OverflowError:
        year = 0 if offset > timedelta(0) else LAST_YEAR + 1
    if not FIRST_YEAR <= year <= LAST_YEAR:
        raise ValueError(f"must lie between the years {FIRST_YEAR} and {LAST_YEAR} (in UTC)")
    return value


Timestamp = Annotated[datetime, AfterValidator(_timestamp)]
Language = Annotated[str, AfterValidator(_language)]
Timezone = Annotated[str, AfterValidator(_timezone)]


class Payload(BaseModel):
    """Base of every payload: tolerant of unknown fields, strict about the ones it knows."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class Expertise(Payload):
    topic: Topic
    level: int = Field(ge=1, le=5, description="1 = some experience, 5 = recognised expert")


class Goal(Payload):
    topic: Topic
    priority: int = Field(ge=1, le=3, description="1 = most important")


class PersonFields(Payload):
    person_id: Identifier
    program_id: Identifier
    display_name: ShortText
    email: Email
    languages: list[Language] = Field(min_length=1, max_length=20)
    timezone: Timezone
    department: ShortText | None = None
    seniority: int | None = Field(default=None, ge=1, le=10)
    manager_id: Identifier | None = None


class MentorRegistered(PersonFields):
    """An HR system enrols a person as a mentor in a program (or updates that enrolment)."""

    expertise: list[Expertise] = Field(min_length=1, max_length=50)
    capacity: int = Field(ge=1, le=50, description="mentees at once in this program")
    learning_interests: list[Topic] | None = Field(
        default=None,
        max_length=20,
        description="what the mentor would like to learn, from a mentee (reverse mentoring)",
    )


class MenteeRegistered(PersonFields):
    """An HR system enrols a person as a mentee in a program (or updates that enrolment)."""

    goals: list[Goal] = Field(min_length=1, max_length=20)
    offers: list[Topic] | None = Field(
        default=None, max_length=20, description="what the mentee can share with a mentor"
    )


class PersonOffboarded(Payload):
    """The person left or withdrew: personal data is erased, open relations end."""

    person_id: Identifier


class MatchResponded(Payload):
    """A mentor or mentee answers a proposal."""

    match_id: Identifier
    person_id: Identifier
    decision: Literal["accepted", "declined"]
    reason: FreeText | None = None


class SessionCompleted(Payload):
    """A mentoring session took place; ratings are optional, from each side."""

    match_id: Identifier
    session_id: Identifier
    duration_minutes: int = Field(ge=1, le=1440)
    mentor_rating: int | None = Field(
        default=None, ge=1, le=5, description="the mentee rates the mentor"
    )
    mentee_rating: int | None = Field(
        default=None, ge=1, le=5, description="the mentor rates the mentee"
    )
    topics: list[Topic] | None = Field(default=None, max_length=20)


EndReason = Literal["goals_reached", "no_time", "not_a_fit", "other"]
Party = Literal["mentor", "mentee"]


class RelationshipEnded(Payload):
    """Someone ends a confirmed relationship before its planned length (or says its goals are
    reached). `note` is kept for the program's coordinators, erased with its author, never logged."""

    match_id: Identifier
    ended_by: Literal["mentor", "mentee", "program"]
    person_id: Identifier | None = Field(default=None, validate_default=True)
    reason: EndReason
    note: FreeText | None = None

    @field_validator("person_id")
    @classmethod
    def _who(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None and info.data.get("ended_by") in ("mentor", "mentee"):
            raise PydanticCustomError("missing", "required unless ended_by is 'program'")
        return value


class GoalReached(Payload):
    topic: Topic
    reached: Literal["yes", "partly", "no"]


class FeedbackGiven(Payload):
    """One side says how the relationship goes (`checkin`) or how it went (`closing`).
    `comment` is erased with its author and never logged."""

    match_id: Identifier
    person_id: Identifier
    kind: Literal["checkin", "closing"]
    rating: int = Field(ge=1, le=5)
    goals: list[GoalReached] | None = Field(
        default=None, max_length=20, description="from the mentee only: each goal and how far"
    )
    learned: bool = Field(description="I learned something from the other person")
    learned_topics: list[Topic] | None = Field(default=None, max_length=20)
    comment: FreeText | None = None


class MentorAvailability(Payload):
    """A mentor pauses (no new proposal until `until`, or until `available: true`) or comes back.
    Relationships in progress go on."""

    person_id: Identifier
    program_id: Identifier
    available: bool
    until: Timestamp | None = Field(default=None, validate_default=True)

    @field_validator("until")
    @classmethod
    def _only_for_a_pause(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        if value is not None and info.data.get("available") is True:
            raise ValueError("only a pause (available: false) has an end")
        return value


Criterion = Literal[
    "topic_fit",
    "languages",
    "timezone",
    "seniority",
    "department",
    "reputation",
    "load",
    "mutual_learning",
]


class ProgramRules(Payload):
    max_timezone_difference_hours: float | None = Field(default=None, ge=0, le=24)
    department: Literal["any", "cross", "same"] = "any"
    min_seniority_gap: int | None = Field(default=None, ge=-9, le=9)
    min_topic_fit: float = Field(
        default=0.01,
        ge=0,
        le=1,
        description="the least topic fit of a proposal; above 0, at least one goal must be "
        "covered (directly or through a related topic); 0 turns the rule off",
    )


class TopicDefinition(Payload):
    """A topic a program adds to the shipped taxonomy, or more it says of a shipped one.
    Every name is compared after normalising case, spacing and punctuation."""

    topic: Topic
    names: dict[Language, Topic] = Field(
        default_factory=dict, description='its name in other languages, e.g. {"fr": "..."}'
    )
    aliases: list[Topic] = Field(default_factory=list, max_length=20, description="synonyms")
    broader: list[Topic] = Field(
        default_factory=list, max_length=5, description="topics it is part of"
    )
    related: list[Topic] = Field(default_factory=list, max_length=20)


class WeightBounds(Payload):
    min: float = Field(default=0, ge=0, le=10)
    max: float = Field(default=1, ge=0, le=10)

    @field_validator("max")
    @classmethod
    def _ordered(cls, value: float, info: ValidationInfo) -> float:
        low = info.data.get("min")
        if low is not None and value < low:
            raise ValueError(f"must be at least min ({low})")
        return value


class ProgramConfigured(Payload):
    """A program manager sets weights, hard rules, deadline, mode and candidate count."""

    program_id: Identifier
    weights: dict[Criterion, float] = Field(default_factory=dict)
    rules: ProgramRules = Field(default_factory=ProgramRules)
    response_deadline_hours: float = Field(default=72, gt=0, le=24 * 60)
    mode: Literal["continuous", "cohort"] = "continuous"
    candidates: int = Field(default=20, ge=1, le=200)
    relationship_length_days: float = Field(default=180, gt=0, le=3650)
    checkin_days: list[Annotated[float, Field(gt=0, le=3650)]] | None = Field(
        default=None,
        max_length=20,
        description="days after the confirmation; absent: 30 and 90, those before the length",
    )
    stall_after_days: float = Field(default=21, gt=0, le=3650)
    topics: list[TopicDefinition] = Field(
        default_factory=list,
        max_length=1000,
        description="topics added to the shipped taxonomy for this program",
    )
    learning: Literal["off", "on"] = Field(
        default="off",
        description="on: the weights are learned from the program's outcomes, within weight_bounds",
    )
    weight_bounds: dict[Criterion, WeightBounds] = Field(
        default_factory=dict, description="bounds of each learned weight (default 0 to 1)"
    )
    learning_min_outcomes: int = Field(
        default=200,
        ge=10,
        le=1_000_000,
        description="outcomes needed before learned weights are used",
    )

    @field_validator("checkin_days")
    @classmethod
    def _within_the_relationship(
        cls, days: list[float] | None, info: ValidationInfo
    ) -> list[float] | None:
        length = info.data.get("relationship_length_days")
        if days is not None and length is not None and any(day >= length for day in days):
            raise ValueError(f"every check-in must come before relationship_length_days ({length})")
        return None if days is None else sorted(set(days))


class CohortMatchRequested(Payload):
    """Assign every waiting mentee of a cohort-mode program at once."""

    program_id: Identifier


# --- canonical events published by profiles -------------------------------------------------


class EnrolmentUpdated(Payload):
    """Canonical state of one enrolment after a registration was accepted (latest `time` wins)."""

    program_id: Identifier
    person_id: Identifier
    role: Literal["mentor", "mentee"]
    display_name: str
    email: str
    languages: list[str]
    timezone: str
    department: str | None = None
    seniority: int | None = None
    manager_id: str | None = None
    expertise: list[Expertise] = Field(default_factory=list)
    goals: list[Goal] = Field(default_factory=list)
    capacity: int = 0
    learning_interests: list[str] = Field(default_factory=list, description="mentors only")
    offers: list[str] = Field(default_factory=list, description="mentees only")
    registered_at: Timestamp
    received_at: Timestamp | None = Field(
        default=None,
        description="when mentornet accepted the registration (absent from older events)",
    )


class EnrolmentEnded(Payload):
    """An enrolment ended; with `erase` the person's personal data must be erased everywhere."""

    program_id: Identifier
    person_id: Identifier
    reason: Literal["offboarded"] = "offboarded"
    erase: bool = True


# --- events published by matching ------------------------------------------------------------


class ExplanationItem(Payload):
    """One criterion of a proposal's score. `reason` is an English sentence written to the
    mentee (v1); `facts` is what it was computed from, for any consumer to render to either side
    in any language (docs/contract.md lists the facts of each criterion; more may come)."""

    criterion: str
    weight: float
    contribution: float
    reason: str
    facts: dict[str, Any] = Field(default_factory=dict)


class MatchProposed(Payload):
    match_id: Identifier
    program_id: Identifier
    mentee_id: Identifier
    mentor_id: Identifier
    score: float = Field(ge=0, le=1)
    explanation: list[ExplanationItem]
    expires_at: Timestamp


class MatchConfirmed(Payload):
    """Both sides accepted: the relationship starts."""

    match_id: Identifier
    program_id: Identifier
    mentee_id: Identifier
    mentor_id: Identifier
    confirmed_at: Timestamp


class MatchEnded(Payload):
    """A proposal or relationship ended; the mentor's place is free again.

    Proposals end `declined`, `expired` or `cancelled`; relationships end `completed` (their
    length was reached, or `goals_reached`), `ended_early` (with `reason`) or `cancelled` (a person
    left). `ended_by` is the person who declined, left or ended it, when known."""

    match_id: Identifier
    program_id: Identifier
    mentee_id: Identifier
    mentor_id: Identifier
    outcome: Literal["declined", "expired", "cancelled", "completed", "ended_early"]
    ended_by: str | None = None
    ended_by_role: Literal["mentor", "mentee", "program"] | None = None
    reason: EndReason | None = None
    relationship_days: float | None = Field(
        default=None, description="from confirmation to the end, for relationships"
    )
    mentee_rematched: bool | None = Field(
        default=None,
        description="for relationships completed or ended early: whether the mentee is matched "
        "again (true) or done with the program (false)",
    )


class RelationshipStalled(Payload):
    """No session for `stall_after_days`: once per quiet spell, both are nudged."""

    match_id: Identifier
    program_id: Identifier
    mentee_id: Identifier
    mentor_id: Identifier
    days_since_last_session: float = Field(
        description="since the last session, or since the confirmation when none was held"
    )


class FeedbackRequested(Payload):
    """Matching asks one person how the relationship goes (`checkin`, the `checkin`-th) or went
    (`closing`); the answer is a `feedback-given`."""

    match_id: Identifier
    program_id: Identifier
    mentee_id: Identifier
    mentor_id: Identifier
    person_id: Identifier = Field(description="who is asked: the mentee or the mentor")
    role: Party
    kind: Literal["checkin", "closing"]
    checkin: int | None = Field(default=None, ge=1, description="which check-in, from 1")
    outcome: Literal["completed", "ended_early"] | None = Field(
        default=None, description="for a closing request: how the relationship ended"
    )


WaitingReason = Literal[
    "no_mentor",
    "no_common_language",
    "no_topic",
    "program_rule",
    "already_proposed",
    "no_free_place",
]


class MenteeWaiting(Payload):
    """A waiting mentee got no proposal, and why: published when the reason changes. The
    reason is the first rule, in this order, that leaves no mentor: `no_mentor` (none enrolled
    and available), `no_common_language`, `no_topic` (none covers a goal enough, see
    min_topic_fit), `program_rule` (time zone, department, seniority, the mentee's manager),
    `already_proposed` (every other one was proposed before), `no_free_place`."""

    program_id: Identifier
    mentee_id: Identifier
    reason: WaitingReason
    waiting_since: Timestamp | None = None


class WeightsLearned(Payload):
    """A program's weights were learned again from its outcomes (`learning: on`)."""

    program_id: Identifier
    weights: dict[str, float] = Field(description="in force: learned, within the bounds")
    configured: dict[str, float] = Field(description="the program's own weights")
    learned: dict[str, float] = Field(description="what the outcomes say, before the bounds")
    outcomes: int = Field(ge=0, description="outcomes the weights were learned from")
    in_force: bool = Field(description="false until learning_min_outcomes is reached")


# --- events published by notifications ---------------------------------------------------------


class NotificationOutcome(Payload):
    notification_id: str
    kind: str
    recipient_id: str
    channel: Literal["email", "webhook"]
    source_event_id: str
    attempts: int
    error: str | None = None


EVENT_MODELS: dict[str, type[Payload]] = {
    "mentor-registered": MentorRegistered,
    "mentee-registered": MenteeRegistered,
    "person-offboarded": PersonOffboarded,
    "match-responded": MatchResponded,
    "session-completed": SessionCompleted,
    "relationship-ended": RelationshipEnded,
    "feedback-given": FeedbackGiven,
    "mentor-availability": MentorAvailability,
    "program-configured": ProgramConfigured,
    "cohort-match-requested": CohortMatchRequested,
    "enrolment-updated": EnrolmentUpdated,
    "enrolment-ended": EnrolmentEnded,
    "match-proposed": MatchProposed,
    "match-confirmed": MatchConfirmed,
    "match-ended": MatchEnded,
    "relationship-stalled": RelationshipStalled,
    "feedback-requested": FeedbackRequested,
    "mentee-waiting": MenteeWaiting,
    "weights-learned": WeightsLearned,
    "notification-delivered": NotificationOutcome,
    "notification-failed": NotificationOutcome,
}
