"""Program health computed from the topics alone, as an analytics team would: pure functions.

The input is decoded CloudEvents as dicts (`type`, `tenantid`, `source`, `id`, `time`, `data`)
from `enrolment-updated`, `enrolment-ended`, `match-proposed`, `match-confirmed`, `match-ended`,
`relationship-stalled`, `feedback-requested`, `session-completed`, `match-responded`,
`feedback-given` and `mentee-waiting`, in any order (topics and partitions interleave freely, so every rule below uses
event times, never arrival order). Nothing reads a database: these are the figures anyone with
read access to the topics can reproduce. Each definition is stated in docs/analytics-guide.md;
change both together.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

Event = Mapping[str, Any]

# Histogram buckets of the HTML report: upper edges (exclusive) and labels, one label more.
HOUR = 3600.0
DAY = 24 * HOUR
TIME_EDGES = (HOUR, 6 * HOUR, DAY, 3 * DAY, 7 * DAY, 30 * DAY)
TIME_LABELS = ("< 1 h", "1-6 h", "6-24 h", "1-3 d", "3-7 d", "7-30 d", ">= 30 d")
LOAD_EDGES = (1e-9, 0.5, 1.0 - 1e-9, 1.0 + 1e-9)
LOAD_LABELS = ("idle", "under half", "half or more", "full", "over capacity")

# Why mentees wait (`mentee-waiting`), in plain words, for the report and `program show`.
NOT_TRIED = "not_tried"  # a waiting mentee matching has not said why of (not tried since)
WAITING_REASONS = {
    "no_mentor": "no mentor enrolled and available",
    "no_common_language": "no mentor speaks their language",
    "no_topic": "no mentor covers a goal",
    "program_rule": "the program's rules leave no mentor",
    "already_proposed": "every fitting mentor was proposed before",
    "no_free_place": "no free place",
    NOT_TRIED: "not tried yet",
}


def waiting_because(reasons: Mapping[str, int]) -> str:
    """'7 no mentor covers a goal, 5 no free place': the most frequent first ('-': none)."""
    ordered = sorted(((r, n) for r, n in reasons.items() if n), key=lambda rn: (-rn[1], rn[0]))
    return ", ".join(f"{n} {WAITING_REASONS.get(r, r)}" for r, n in ordered) or "-"


WIN_RATING = 4  # a closing feedback rated at or above this (out of 5) is a win for that side
REACHED = frozenset({"yes", "partly"})  # a goal reached at least partly
CLOSED = frozenset({"completed", "ended_early"})  # relationships that ran or were ended by a party
# Events only a confirmed relationship has: they prove the confirmation even when its
# match-confirmed is older than the retained window (relationships outlast the 30 days).
RELATIONSHIP_EVENTS = frozenset({"relationship-stalled", "feedback-requested"})
MATCH_TOPICS = frozenset({"match-proposed", "match-confirmed", "match-ended"}) | RELATIONSHIP_EVENTS


# --- statistics --------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-quantile (q from 0 to 1) by linear interpolation between closest ranks.

    The same as NumPy's default and Excel's PERCENTILE.INC, so analysts can check our figures in
    the tool they already use. None for no values.
    """
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def gini(values: Sequence[float]) -> float | None:
    """Gini coefficient: 0 when every value is equal, towards 1 when one holds everything.

    G = sum over i, j of |x_i - x_j| / (2 n^2 mean), computed on the sorted values; 0 when all are 0.
    """
    if not values:
        return None
    total = sum(values)
    if total == 0:
        return 0.0
    n = len(values)
    ranked = sum((i + 1) * x for i, x in enumerate(sorted(values)))
    return 2 * ranked / (n * total) - (n + 1) / n


def histogram(values: Iterable[float], edges: Sequence[float]) -> list[int]:
    """Counts per bucket: below edges[0], [edges[i-1], edges[i]), and at or above edges[-1]."""
    counts = [0] * (len(edges) + 1)
    for value in values:
        counts[sum(1 for edge in edges if value >= edge)] += 1
    return counts


def parse_time(value: str | datetime) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def _rate(part: int, whole: int) -> float | None:
    """part / whole, or None when there is nothing to measure (a figure without data)."""
    return part / whole if whole else None


@dataclass(frozen=True)
class Summary:
    """A distribution of durations in seconds: how many, median and 90th percentile."""

    values: tuple[float, ...] = ()

    @property
    def count(self) -> int:
        return len(self.values)

    @property
    def median(self) -> float | None:
        return percentile(self.values, 0.5)

    @property
    def p90(self) -> float | None:
        return percentile(self.values, 0.9)

    def as_dict(self) -> dict[str, Any]:
        return {"count": self.count, "median_seconds": self.median, "p90_seconds": self.p90}

    def as_days(self) -> dict[str, Any]:
        """For lengths counted in days (relationships), as programs plan them."""
        median, p90 = self.median, self.p90
        return {
            "count": self.count,
            "median_days": None if median is None else median / DAY,
            "p90_days": None if p90 is None else p90 / DAY,
        }


# --- the report --------------------------------------------------------------------------------


@dataclass(frozen=True)
class MentorLoad:
    """One enrolled mentor: what holds a place (open proposals and open relationships) against
    the capacity HR gave; matching never proposes beyond it."""

    mentor_id: str
    proposals: int
    relationships: int
    capacity: int

    @property
    def load(self) -> float:
        return (self.proposals + self.relationships) / self.capacity if self.capacity else 0.0


@dataclass(frozen=True)
class ProgramHealth:
    """The health figures of one program of one tenant (definitions: docs/analytics-guide.md)."""

    tenant: str
    program: str
    mentors: int
    mentees: int
    mentees_waiting: int
    waiting_reasons: dict[str, int]  # why the waiting mentees wait ("not_tried": not said yet)
    time_to_proposal: Summary
    time_to_confirmation: Summary
    response_time: Summary
    proposals: int
    accepted: int
    declined: int
    expired: int
    cancelled: int
    pending: int
    relationships: int
    open_relationships: int
    completed_relationships: int
    ended_early_relationships: int
    ended_early_reasons: dict[str, int]
    cancelled_relationships: int
    relationship_length: Summary
    sessions: int
    checkin_requests: int
    checkins_answered: int
    stalled_relationships: int
    goals_reported: int
    goals_reached: int
    closed_with_both_feedbacks: int
    win_win: int
    mentor_loads: tuple[MentorLoad, ...]

    @property
    def decided(self) -> int:
        """Proposals that got an answer or ran out: accepted, declined or expired."""
        return self.accepted + self.declined + self.expired

    @property
    def acceptance_rate(self) -> float | None:
        return _rate(self.accepted, self.decided)

    @property
    def sessions_per_relationship(self) -> float | None:
        return _rate(self.sessions, self.relationships)

    @property
    def checkin_response_rate(self) -> float | None:
        return _rate(self.checkins_answered, self.checkin_requests)

    @property
    def goal_attainment(self) -> float | None:
        return _rate(self.goals_reached, self.goals_reported)

    @property
    def win_win_rate(self) -> float | None:
        return _rate(self.win_win, self.closed_with_both_feedbacks)

    @property
    def loads(self) -> list[float]:
        return [m.load for m in self.mentor_loads]

    @property
    def load_mean(self) -> float | None:
        return sum(self.loads) / len(self.loads) if self.loads else None

    @property
    def load_max(self) -> float | None:
        return max(self.loads) if self.loads else None

    @property
    def load_gini(self) -> float | None:
        return gini(self.loads)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready figures, for `mentornet report --json` and anyone scripting on top."""
        return {
            "tenant": self.tenant,
            "program": self.program,
            "mentors": self.mentors,
            "mentees": self.mentees,
            "mentees_waiting": self.mentees_waiting,
            "waiting_reasons": self.waiting_reasons,
            "time_to_proposal": self.time_to_proposal.as_dict(),
            "time_to_confirmation": self.time_to_confirmation.as_dict(),
            "response_time": self.response_time.as_dict(),
            "proposals": {
                "total": self.proposals,
                "accepted": self.accepted,
                "declined": self.declined,
                "expired": self.expired,
                "cancelled": self.cancelled,
                "pending": self.pending,
            },
            "acceptance_rate": self.acceptance_rate,
            "relationships": self.relationships,
            "open_relationships": self.open_relationships,
            "completed_relationships": self.completed_relationships,
            "ended_early_relationships": self.ended_early_relationships,
            "ended_early_reasons": dict(self.ended_early_reasons),
            "cancelled_relationships": self.cancelled_relationships,
            "relationship_length": self.relationship_length.as_days(),
            "sessions": self.sessions,
            "sessions_per_relationship": self.sessions_per_relationship,
            "checkin_requests": self.checkin_requests,
            "checkins_answered": self.checkins_answered,
            "checkin_response_rate": self.checkin_response_rate,
            "stalled_relationships": self.stalled_relationships,
            "goals_reported": self.goals_reported,
            "goals_reached": self.goals_reached,
            "goal_attainment": self.goal_attainment,
            "closed_with_both_feedbacks": self.closed_with_both_feedbacks,
            "win_win": self.win_win,
            "win_win_rate": self.win_win_rate,
            "mentor_load": {
                "mean": self.load_mean,
                "max": self.load_max,
                "gini": self.load_gini,
                "mentors": [
                    {
                        "mentor_id": m.mentor_id,
                        "proposals": m.proposals,
                        "relationships": m.relationships,
                        "capacity": m.capacity,
                        "load": m.load,
                    }
                    for m in self.mentor_loads
                ],
            },
        }


@dataclass
class _Enrolment:
    role: str
    capacity: int
    updated_at: datetime  # event time of the latest enrolment-updated
    first_mentee_received: datetime | None = None  # when mentornet first had them as mentee
    ended_at: datetime | None = None
    waiting: tuple[datetime, str] | None = None  # the latest mentee-waiting: (time, reason)

    @property
    def active(self) -> bool:
        return self.ended_at is None or self.updated_at > self.ended_at


@dataclass(frozen=True)
class _Closing:
    """One closing feedback-given; per side, the latest (by time, then id) counts."""

    at: datetime
    event_id: str
    rating: int
    learned: bool
    goals: tuple[str, ...]  # how far each goal was reached (the mentee's feedback)


@dataclass
class _Match:
    tenant: str
    program: str
    mentee: str
    mentor: str
    proposed_at: datetime | None = None
    confirmed_at: datetime | None = None
    confirmed: bool = False  # a match-confirmed, or an event only a relationship has
    ended_at: datetime | None = None  # of the earliest match-ended, which decides the fields below
    outcome: str | None = None
    reason: str | None = None
    relationship_days: float | None = None
    mentee_rematched: bool | None = None
    sessions: int = 0
    last_session_at: datetime | None = None
    stalled_at: datetime | None = None  # the latest relationship-stalled
    checkins_asked: dict[tuple[str, int], datetime] = field(default_factory=dict)  # earliest
    checkins_given: list[tuple[str, datetime]] = field(default_factory=list)
    closing: dict[str, _Closing] = field(default_factory=dict)  # by side: mentee, mentor

    @property
    def open_proposal(self) -> bool:
        return not self.confirmed and self.outcome is None

    @property
    def open_relationship(self) -> bool:
        return self.confirmed and self.outcome is None

    @property
    def closed(self) -> bool:
        """Completed or ended early: the relationship ran its course or a party ended it."""
        return self.outcome in CLOSED

    @property
    def mentee_done(self) -> bool:
        """The mentee is done with the program after this relationship (not matched again): as
        match-ended says, or, when it does not say, after a completion."""
        if self.mentee_rematched is not None:
            return self.closed and not self.mentee_rematched
        return self.outcome == "completed"

    @property
    def length(self) -> float | None:
        """Seconds from confirmation to the end of a closed relationship, when known."""
        if not self.closed:
            return None
        if self.relationship_days is not None:
            return max(0.0, self.relationship_days * DAY)
        if self.confirmed_at is not None and self.ended_at is not None:
            return _seconds(self.confirmed_at, self.ended_at)
        return None

    @property
    def stalled(self) -> bool:
        """Its latest stall was not followed by a session, and it has not ended."""
        return (
            self.stalled_at is not None
            and self.outcome is None
            and (self.last_session_at is None or self.last_session_at <= self.stalled_at)
        )

    def checkins_answered(self) -> int:
        """Check-in requests answered: a check-in feedback answers only the latest request to its
        author at or before its time (given after check-ins 1 and 2 were asked, it answers 2)."""
        answered: set[tuple[str, int]] = set()
        for person, at in self.checkins_given:
            asked = [
                (when, number)
                for (whom, number), when in self.checkins_asked.items()
                if whom == person and when <= at
            ]
            if asked:
                answered.add((person, max(asked)[1]))
        return len(answered)

    @property
    def win_win(self) -> bool | None:
        """None unless closed with both closing feedbacks; then: the mentee reached a goal at
        least partly and rated 4+, and the mentor rated 4+ or learned something."""
        mentee, mentor = self.closing.get("mentee"), self.closing.get("mentor")
        if not self.closed or mentee is None or mentor is None:
            return None
        reached = any(goal in REACHED for goal in mentee.goals)
        return both_won(reached, mentee.rating, mentor.rating, mentor.learned)


def both_won(goal_reached: bool, mentee_rating: int, mentor_rating: int, learned: bool) -> bool:
    """A win/win: the mentee reached a goal at least partly and rated it 4+, and the mentor rated
    it 4+ or learned something (docs/analytics-guide.md)."""
    return goal_reached and mentee_rating >= WIN_RATING and (mentor_rating >= WIN_RATING or learned)


def _earliest(current: datetime | None, candidate: datetime) -> datetime:
    return candidate if current is None or candidate < current else current


def _latest(current: datetime | None, candidate: datetime) -> datetime:
    return candidate if current is None or candidate > current else current


def _seconds(start: datetime, end: datetime) -> float:
    """A duration, never negative (clocks of HR systems and mentornet may disagree a little)."""
    return max(0.0, (end - start).total_seconds())


def program_health(
    events: Iterable[Event], *, tenant: str | None = None, program: str | None = None
) -> list[ProgramHealth]:
    """Figures per (tenant, program), sorted; optionally one tenant and/or one program only."""
    seen: set[tuple[Any, Any, Any]] = set()
    enrolments: dict[tuple[str, str, str], _Enrolment] = {}
    matches: dict[tuple[str, str], _Match] = {}
    responses: list[tuple[str, Mapping[str, Any], datetime]] = []
    app_events: list[tuple[str, Event, datetime]] = []  # sessions and feedback, once all is read
    waiting: list[tuple[str, Mapping[str, Any], datetime]] = []  # mentee-waiting, once all is read

    for event in events:
        tenant_id = event.get("tenantid")
        if not isinstance(tenant_id, str) or (tenant is not None and tenant_id != tenant):
            continue
        identity = (tenant_id, event.get("source"), event.get("id"))
        if identity in seen:  # a republished event (same tenant, source and id) counts once
            continue
        seen.add(identity)
        kind, data, at = event.get("type"), event.get("data") or {}, parse_time(event["time"])
        if kind == "enrolment-updated":
            _enrolment_updated(enrolments, tenant_id, data, at)
        elif kind == "enrolment-ended":
            key = (tenant_id, data["program_id"], data["person_id"])
            if key in enrolments:
                enrolments[key].ended_at = _latest(enrolments[key].ended_at, at)
            else:
                enrolments[key] = _Enrolment("ended", 0, at, ended_at=at)
        elif kind in MATCH_TOPICS:
            match = matches.setdefault(
                (tenant_id, data["match_id"]),
                _Match(tenant_id, data["program_id"], data["mentee_id"], data["mentor_id"]),
            )
            _match_event(match, kind, data, at)
        elif kind == "match-responded":
            responses.append((tenant_id, data, at))
        elif kind == "mentee-waiting":
            waiting.append((tenant_id, data, at))
        elif kind in ("session-completed", "feedback-given"):
            app_events.append((tenant_id, event, at))

    for tenant_id, event, at in app_events:
        data = event["data"]
        relationship = matches.get((tenant_id, data["match_id"]))
        if relationship is None or not relationship.confirmed:
            continue  # matching refuses sessions and feedback of unknown or unconfirmed matches
        if event["type"] == "session-completed":
            relationship.sessions += 1
            relationship.last_session_at = _latest(relationship.last_session_at, at)
        elif data["kind"] == "checkin":
            relationship.checkins_given.append((data["person_id"], at))
        else:
            _closing_feedback(relationship, event, at)

    for tenant_id, data, at in waiting:
        enrolment = enrolments.get((tenant_id, data["program_id"], data["mentee_id"]))
        if enrolment is not None and (enrolment.waiting is None or at >= enrolment.waiting[0]):
            enrolment.waiting = (at, data["reason"])

    first_answers: dict[tuple[str, str, str], float] = {}
    for tenant_id, data, at in responses:
        answered = matches.get((tenant_id, data["match_id"]))
        person = data.get("person_id")
        if (
            answered is None
            or answered.proposed_at is None
            or person not in (answered.mentee, answered.mentor)
        ):
            continue
        key = (tenant_id, data["match_id"], person)
        waited = _seconds(answered.proposed_at, at)
        first_answers[key] = min(waited, first_answers.get(key, waited))

    people: dict[tuple[str, str], dict[str, _Enrolment]] = defaultdict(dict)
    for (tenant_id, program_id, person), enrolment in enrolments.items():
        people[(tenant_id, program_id)][person] = enrolment
    program_matches: dict[tuple[str, str], list[_Match]] = defaultdict(list)
    for m in matches.values():
        program_matches[(m.tenant, m.program)].append(m)
    answers_by_program: dict[tuple[str, str], list[float]] = defaultdict(list)
    for (tenant_id, match_id, _), waited in first_answers.items():
        m = matches[(tenant_id, match_id)]
        answers_by_program[(m.tenant, m.program)].append(waited)
    programs = set(people) | set(program_matches)
    return [
        _program(t, p, people[(t, p)], program_matches[(t, p)], answers_by_program[(t, p)])
        for t, p in sorted(programs)
        if program is None or p == program
    ]


def _waiting_reason(enrolment: _Enrolment, matches: Sequence[_Match]) -> str:
    """Why a waiting mentee waits: the latest `mentee-waiting` said after their latest proposal
    ended ("not_tried" when none was: matching has not tried since, e.g. in cohort mode)."""
    if enrolment.waiting is None:
        return NOT_TRIED
    at, reason = enrolment.waiting
    ended = [m.ended_at for m in matches if m.ended_at is not None]
    return reason if not ended or at >= max(ended) else NOT_TRIED


def _enrolment_updated(
    enrolments: dict[tuple[str, str, str], _Enrolment],
    tenant_id: str,
    data: Mapping[str, Any],
    at: datetime,
) -> None:
    """The latest enrolment-updated (by event time) decides role and capacity; the waiting for a
    proposal starts when mentornet received the registration (the HR system's `registered_at`
    only for events older than `received_at`)."""
    key = (tenant_id, data["program_id"], data["person_id"])
    role, capacity = data["role"], int(data.get("capacity") or 0)
    received = (
        parse_time(data.get("received_at") or data["registered_at"]) if role == "mentee" else None
    )
    current = enrolments.get(key)
    if current is None:
        enrolments[key] = _Enrolment(role, capacity, at, received)
        return
    if received is not None:
        current.first_mentee_received = _earliest(current.first_mentee_received, received)
    if at >= current.updated_at or current.role == "ended":
        current.role, current.capacity, current.updated_at = role, capacity, at


def _match_event(match: _Match, kind: str, data: Mapping[str, Any], at: datetime) -> None:
    """What one event of matching says about its match."""
    if kind == "match-proposed":
        match.proposed_at = _earliest(match.proposed_at, at)
    elif kind == "match-confirmed":
        match.confirmed = True
        match.confirmed_at = _earliest(
            match.confirmed_at, parse_time(data.get("confirmed_at") or at)
        )
    elif kind == "match-ended":
        if match.ended_at is None or at < match.ended_at:  # the first ending is the ending
            match.ended_at, match.outcome = at, data["outcome"]
            match.reason, match.relationship_days, match.mentee_rematched = (
                data.get("reason"),
                data.get("relationship_days"),
                data.get("mentee_rematched"),
            )
        if data["outcome"] in CLOSED or data.get("relationship_days") is not None:
            match.confirmed = True
    else:  # relationship-stalled, feedback-requested: only relationships have them
        match.confirmed = True
        if kind == "relationship-stalled":
            match.stalled_at = _latest(match.stalled_at, at)
        elif data["kind"] == "checkin":
            asked = (data["person_id"], int(data.get("checkin") or 0))
            match.checkins_asked[asked] = _earliest(match.checkins_asked.get(asked), at)


def _closing_feedback(match: _Match, event: Event, at: datetime) -> None:
    """Keep each side's latest closing feedback; feedback of anyone else is ignored."""
    data = event["data"]
    side = {match.mentee: "mentee", match.mentor: "mentor"}.get(data["person_id"])
    if side is None:
        return
    closing = _Closing(
        at,
        str(event.get("id")),
        int(data["rating"]),
        bool(data["learned"]),
        tuple(goal["reached"] for goal in data.get("goals") or ()),
    )
    current = match.closing.get(side)
    if current is None or (closing.at, closing.event_id) > (current.at, current.event_id):
        match.closing[side] = closing


def _program(
    tenant_id: str,
    program_id: str,
    people: Mapping[str, _Enrolment],
    ours: Sequence[_Match],
    answers: list[float],
) -> ProgramHealth:
    """The figures of one program from its enrolments (by person) and its matches."""
    by_mentee: dict[str, list[_Match]] = defaultdict(list)
    held_by_mentor: dict[str, list[_Match]] = defaultdict(list)
    for m in ours:
        by_mentee[m.mentee].append(m)
        held_by_mentor[m.mentor].append(m)
    active_mentees = [p for p, e in people.items() if e.active and e.role == "mentee"]
    active_mentors = {p: e for p, e in people.items() if e.active and e.role == "mentor"}

    to_proposal: list[float] = []
    to_confirmation: list[float] = []
    for person, enrolment in people.items():
        received = enrolment.first_mentee_received
        if received is None:
            continue
        proposed = [m.proposed_at for m in by_mentee[person] if m.proposed_at is not None]
        confirmed = [m.confirmed_at for m in by_mentee[person] if m.confirmed_at is not None]
        if proposed:
            to_proposal.append(_seconds(received, min(proposed)))
        if confirmed:
            to_confirmation.append(_seconds(received, min(confirmed)))

    reasons: defaultdict[str, int] = defaultdict(int)
    for person in active_mentees:
        if any(m.open_proposal or m.open_relationship or m.mentee_done for m in by_mentee[person]):
            continue
        reasons[_waiting_reason(people[person], by_mentee[person])] += 1
    outcomes: defaultdict[str, int] = defaultdict(int)
    for m in ours:
        outcomes["accepted" if m.confirmed else (m.outcome or "pending")] += 1
    relationships = [m for m in ours if m.confirmed]
    ended_early_reasons: defaultdict[str, int] = defaultdict(int)
    for m in relationships:
        if m.outcome == "ended_early":
            ended_early_reasons[m.reason or "other"] += 1
    lengths = [m.length for m in relationships]
    goals = [
        goal for m in relationships if "mentee" in m.closing for goal in m.closing["mentee"].goals
    ]
    verdicts = [m.win_win for m in relationships if m.win_win is not None]
    loads = tuple(
        MentorLoad(
            mentor,
            sum(1 for m in held_by_mentor[mentor] if m.open_proposal),
            sum(1 for m in held_by_mentor[mentor] if m.open_relationship),
            enrolment.capacity,
        )
        for mentor, enrolment in sorted(active_mentors.items())
    )
    return ProgramHealth(
        tenant=tenant_id,
        program=program_id,
        mentors=len(active_mentors),
        mentees=len(active_mentees),
        mentees_waiting=sum(reasons.values()),
        waiting_reasons=dict(sorted(reasons.items())),
        time_to_proposal=Summary(tuple(sorted(to_proposal))),
        time_to_confirmation=Summary(tuple(sorted(to_confirmation))),
        response_time=Summary(tuple(sorted(answers))),
        proposals=len(ours),
        accepted=outcomes["accepted"],
        declined=outcomes["declined"],
        expired=outcomes["expired"],
        cancelled=outcomes["cancelled"],
        pending=outcomes["pending"],
        relationships=len(relationships),
        open_relationships=sum(1 for m in relationships if m.open_relationship),
        completed_relationships=sum(1 for m in relationships if m.outcome == "completed"),
        ended_early_relationships=sum(ended_early_reasons.values()),
        ended_early_reasons=dict(sorted(ended_early_reasons.items())),
        cancelled_relationships=sum(1 for m in relationships if m.outcome == "cancelled"),
        relationship_length=Summary(tuple(sorted(x for x in lengths if x is not None))),
        sessions=sum(m.sessions for m in relationships),
        checkin_requests=sum(len(m.checkins_asked) for m in relationships),
        checkins_answered=sum(m.checkins_answered() for m in relationships),
        stalled_relationships=sum(1 for m in relationships if m.stalled),
        goals_reported=len(goals),
        goals_reached=sum(1 for goal in goals if goal in REACHED),
        closed_with_both_feedbacks=len(verdicts),
        win_win=sum(verdicts),
        mentor_loads=loads,
    )
