"""Program health computed from the topics alone, as an analytics team would: pure functions.

The input is decoded CloudEvents as dicts (`type`, `tenantid`, `source`, `id`, `time`, `data`)
from `enrolment-updated`, `enrolment-ended`, `match-proposed`, `match-confirmed`, `match-ended`,
`session-completed` and `match-responded`, in any order (topics and partitions interleave freely,
so every rule below uses event times, never arrival order). Nothing reads a database: these are
the figures anyone with read access to the topics can reproduce. Each definition is stated in
docs/analytics-guide.md; change both together.
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
WIN_RATING = 4.0  # an average rating at or above this is a "win" for that side


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


# --- the report --------------------------------------------------------------------------------


@dataclass(frozen=True)
class MentorLoad:
    """One enrolled mentor: open confirmed relationships against the capacity HR gave."""

    mentor_id: str
    relationships: int
    capacity: int

    @property
    def load(self) -> float:
        return self.relationships / self.capacity if self.capacity else 0.0


@dataclass(frozen=True)
class ProgramHealth:
    """The health figures of one program of one tenant (definitions: docs/analytics-guide.md)."""

    tenant: str
    program: str
    mentors: int
    mentees: int
    mentees_waiting: int
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
    sessions: int
    rated_both_ways: int
    win_win: int
    mentor_loads: tuple[MentorLoad, ...]

    @property
    def decided(self) -> int:
        """Proposals that got an answer or ran out: accepted, declined or expired."""
        return self.accepted + self.declined + self.expired

    @property
    def acceptance_rate(self) -> float | None:
        return self.accepted / self.decided if self.decided else None

    @property
    def sessions_per_relationship(self) -> float | None:
        return self.sessions / self.relationships if self.relationships else None

    @property
    def win_win_rate(self) -> float | None:
        return self.win_win / self.rated_both_ways if self.rated_both_ways else None

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
            "sessions": self.sessions,
            "sessions_per_relationship": self.sessions_per_relationship,
            "rated_both_ways": self.rated_both_ways,
            "win_win": self.win_win,
            "win_win_rate": self.win_win_rate,
            "mentor_load": {
                "mean": self.load_mean,
                "max": self.load_max,
                "gini": self.load_gini,
                "mentors": [
                    {
                        "mentor_id": m.mentor_id,
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
    first_mentee_registration: datetime | None = None
    ended_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.ended_at is None or self.updated_at > self.ended_at


@dataclass
class _Match:
    tenant: str
    program: str
    mentee: str
    mentor: str
    proposed_at: datetime | None = None
    confirmed_at: datetime | None = None
    outcome: str | None = None  # of match-ended
    sessions: int = 0
    mentor_ratings: list[int] = field(default_factory=list)
    mentee_ratings: list[int] = field(default_factory=list)

    @property
    def open_proposal(self) -> bool:
        return self.confirmed_at is None and self.outcome is None

    @property
    def open_relationship(self) -> bool:
        return self.confirmed_at is not None and self.outcome is None


def _earliest(current: datetime | None, candidate: datetime) -> datetime:
    return candidate if current is None or candidate < current else current


def _seconds(start: datetime, end: datetime) -> float:
    """A duration, never negative (clocks of HR systems and mentornet may disagree a little)."""
    return max(0.0, (end - start).total_seconds())


def _mean(values: Sequence[int]) -> float:
    return sum(values) / len(values)


def program_health(
    events: Iterable[Event], *, tenant: str | None = None, program: str | None = None
) -> list[ProgramHealth]:
    """Figures per (tenant, program), sorted; optionally one tenant and/or one program only."""
    seen: set[tuple[Any, Any, Any]] = set()
    enrolments: dict[tuple[str, str, str], _Enrolment] = {}
    matches: dict[tuple[str, str], _Match] = {}
    responses: list[tuple[str, Mapping[str, Any], datetime]] = []
    sessions: list[tuple[str, Mapping[str, Any]]] = []

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
                current = enrolments[key].ended_at
                enrolments[key].ended_at = at if current is None or at > current else current
            else:
                enrolments[key] = _Enrolment("ended", 0, at, ended_at=at)
        elif kind in ("match-proposed", "match-confirmed", "match-ended"):
            match = matches.setdefault(
                (tenant_id, data["match_id"]),
                _Match(tenant_id, data["program_id"], data["mentee_id"], data["mentor_id"]),
            )
            if kind == "match-proposed":
                match.proposed_at = _earliest(match.proposed_at, at)
            elif kind == "match-confirmed":
                match.confirmed_at = _earliest(
                    match.confirmed_at, parse_time(data.get("confirmed_at") or at)
                )
            else:
                match.outcome = match.outcome or data["outcome"]
        elif kind == "match-responded":
            responses.append((tenant_id, data, at))
        elif kind == "session-completed":
            sessions.append((tenant_id, data))

    for tenant_id, data in sessions:
        rated = matches.get((tenant_id, data["match_id"]))
        if rated is None or rated.confirmed_at is None:
            continue  # matching refuses sessions of unknown or unconfirmed matches too
        rated.sessions += 1
        if data.get("mentor_rating") is not None:
            rated.mentor_ratings.append(int(data["mentor_rating"]))
        if data.get("mentee_rating") is not None:
            rated.mentee_ratings.append(int(data["mentee_rating"]))

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


def _enrolment_updated(
    enrolments: dict[tuple[str, str, str], _Enrolment],
    tenant_id: str,
    data: Mapping[str, Any],
    at: datetime,
) -> None:
    """The latest enrolment-updated (by event time) decides role and capacity."""
    key = (tenant_id, data["program_id"], data["person_id"])
    role, capacity = data["role"], int(data.get("capacity") or 0)
    registered = parse_time(data["registered_at"]) if role == "mentee" else None
    current = enrolments.get(key)
    if current is None:
        enrolments[key] = _Enrolment(role, capacity, at, registered)
        return
    if registered is not None:
        current.first_mentee_registration = _earliest(current.first_mentee_registration, registered)
    if at >= current.updated_at or current.role == "ended":
        current.role, current.capacity, current.updated_at = role, capacity, at


def _program(
    tenant_id: str,
    program_id: str,
    people: Mapping[str, _Enrolment],
    ours: Sequence[_Match],
    answers: list[float],
) -> ProgramHealth:
    """The figures of one program from its enrolments (by person) and its matches."""
    by_mentee: dict[str, list[_Match]] = defaultdict(list)
    open_by_mentor: dict[str, int] = defaultdict(int)
    for m in ours:
        by_mentee[m.mentee].append(m)
        if m.open_relationship:
            open_by_mentor[m.mentor] += 1
    active_mentees = [p for p, e in people.items() if e.active and e.role == "mentee"]
    active_mentors = {p: e for p, e in people.items() if e.active and e.role == "mentor"}

    to_proposal: list[float] = []
    to_confirmation: list[float] = []
    for person, enrolment in people.items():
        registered = enrolment.first_mentee_registration
        if registered is None:
            continue
        proposed = [m.proposed_at for m in by_mentee[person] if m.proposed_at is not None]
        confirmed = [m.confirmed_at for m in by_mentee[person] if m.confirmed_at is not None]
        if proposed:
            to_proposal.append(_seconds(registered, min(proposed)))
        if confirmed:
            to_confirmation.append(_seconds(registered, min(confirmed)))

    waiting = sum(
        1
        for person in active_mentees
        if not any(m.open_proposal or m.open_relationship for m in by_mentee[person])
    )
    outcomes: defaultdict[str, int] = defaultdict(int)
    for m in ours:
        outcomes["accepted" if m.confirmed_at else (m.outcome or "pending")] += 1
    confirmed_matches = [m for m in ours if m.confirmed_at is not None]
    both_rated = [m for m in confirmed_matches if m.mentor_ratings and m.mentee_ratings]
    loads = tuple(
        MentorLoad(mentor, open_by_mentor[mentor], enrolment.capacity)
        for mentor, enrolment in sorted(active_mentors.items())
    )
    return ProgramHealth(
        tenant=tenant_id,
        program=program_id,
        mentors=len(active_mentors),
        mentees=len(active_mentees),
        mentees_waiting=waiting,
        time_to_proposal=Summary(tuple(sorted(to_proposal))),
        time_to_confirmation=Summary(tuple(sorted(to_confirmation))),
        response_time=Summary(tuple(sorted(answers))),
        proposals=len(ours),
        accepted=outcomes["accepted"],
        declined=outcomes["declined"],
        expired=outcomes["expired"],
        cancelled=outcomes["cancelled"],
        pending=outcomes["pending"],
        relationships=len(confirmed_matches),
        open_relationships=sum(1 for m in confirmed_matches if m.open_relationship),
        sessions=sum(m.sessions for m in confirmed_matches),
        rated_both_ways=len(both_rated),
        win_win=sum(
            1
            for m in both_rated
            if _mean(m.mentor_ratings) >= WIN_RATING and _mean(m.mentee_ratings) >= WIN_RATING
        ),
        mentor_loads=loads,
    )
