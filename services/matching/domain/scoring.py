"""Scoring a program's mentors for one mentee, vectorised over the whole pool with numpy.

Every criterion (`criteria`) is a number in 0..1 for each mentor; the score is their weighted
mean with the program's weights (normalised to sum to 1), so each criterion's contribution is
weight x value and the contributions add up to the score. Hard rules are a boolean mask applied
before ranking.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from numpy.typing import NDArray

from services.matching.domain import criteria
from services.matching.domain.config import CRITERIA, ProgramConfig
from services.matching.domain.criteria import Bools, Floats, Ints, Values
from services.matching.domain.topics import Taxonomy, normalise_topic
from shared.contract.events import WaitingReason

# A pool keeps what it computed for the mentees it has seen (the coverage of each goal and offer,
# the time zone gap from each UTC offset, ...), up to this many values (16 MB): the next mentee
# with the same goal, time zone, seniority, department or languages reads it instead of
# computing it again. Mentees share these facts far more than they differ.
COVERAGE_FLOATS = 2_000_000


@dataclass(frozen=True)
class Person:
    """What matching knows of one enrolment (never a name or an email)."""

    person_id: str
    languages: tuple[str, ...]
    timezone: str
    department: str | None = None
    seniority: int | None = None
    manager_id: str | None = None


@dataclass(frozen=True)
class Mentor(Person):
    expertise: tuple[tuple[str, int], ...] = ()  # (topic, level 1..5)
    capacity: int = 1
    load: int = 0
    rating_sum: int = 0
    rating_count: int = 0
    learning_interests: tuple[str, ...] = ()


@dataclass(frozen=True)
class Mentee(Person):
    goals: tuple[tuple[str, int], ...] = ()  # (topic, priority 1..3)
    waiting_since: datetime | None = None
    offers: tuple[str, ...] = ()
    past_mentors: tuple[str, ...] = ()  # never proposed to this mentee again (see `eligible`)
    waiting_reason: str | None = None  # why the last try found no mentor (None: not tried)


@dataclass
class MentorPool:
    """A program's mentors as columns, so one mentee is scored against all of them at once."""

    mentors: list[Mentor]
    now: datetime
    index: dict[str, int] = field(init=False)
    languages: dict[str, Bools] = field(init=False)
    utc_offset: Floats = field(init=False)
    seniority: Floats = field(init=False)  # NaN when not known
    department_codes: dict[str, int] = field(init=False)
    department_code: Ints = field(init=False)  # criteria.NO_DEPARTMENT when not known
    capacity: Ints = field(init=False)
    load: Ints = field(init=False)  # loads and capacities change through `_changed` only
    free: Bools = field(init=False)  # load below capacity
    load_value: Floats = field(init=False)  # the `load` criterion, kept as places are taken
    reputation: Floats = field(init=False)
    expertise: dict[str, tuple[Ints, Floats]] = field(init=False)  # name -> (rows, values)
    interests: dict[str, Ints] = field(init=False)  # name -> rows of mentors wanting to learn it
    _memo: dict[tuple[object, ...], NDArray[Any]] = field(init=False)  # see `memo`

    def __post_init__(self) -> None:
        n = len(self.mentors)
        self.index = {m.person_id: i for i, m in enumerate(self.mentors)}
        offsets = {
            tz: criteria.utc_offset_hours(tz, self.now) for tz in {m.timezone for m in self.mentors}
        }
        self.utc_offset = np.array([offsets[m.timezone] for m in self.mentors], dtype=float)
        self.seniority = np.array(
            [np.nan if m.seniority is None else m.seniority for m in self.mentors], dtype=float
        )
        known = {m.department for m in self.mentors if m.department is not None}
        self.department_codes = {d: i for i, d in enumerate(sorted(known))}
        self.department_code = np.array(
            [self.department_of(m.department) for m in self.mentors], dtype=np.int64
        )
        self.capacity = np.array([m.capacity for m in self.mentors], dtype=np.int64)
        self.load = np.array([m.load for m in self.mentors], dtype=np.int64)
        self.free = self.load < self.capacity
        self.load_value = criteria.load(self.load, self.capacity)
        self.reputation = criteria.reputation(
            np.array([m.rating_sum for m in self.mentors], dtype=float),
            np.array([m.rating_count for m in self.mentors], dtype=float),
        )
        self.languages = {}
        topics: dict[str, tuple[list[int], list[float]]] = {}
        interests: dict[str, list[int]] = {}
        for i, m in enumerate(self.mentors):
            for code in m.languages:
                self.languages.setdefault(code, np.zeros(n, dtype=bool))[i] = True
            for topic, level in m.expertise:
                rows, values = topics.setdefault(normalise_topic(topic), ([], []))
                rows.append(i)
                values.append(criteria.expertise_value(level))
            for topic in dict.fromkeys(map(normalise_topic, m.learning_interests)):
                interests.setdefault(topic, []).append(i)
        self.expertise = {
            t: (np.array(rows, dtype=np.int64), np.array(values))
            for t, (rows, values) in topics.items()
        }
        self.interests = {t: np.array(rows, dtype=np.int64) for t, rows in interests.items()}
        self._memo = {}

    def __len__(self) -> int:
        return len(self.mentors)

    def department_of(self, department: str | None) -> int:
        """A department's code: NO_DEPARTMENT when not known, and one no mentor has for a
        department none of the pool's mentors is in."""
        if department is None:
            return criteria.NO_DEPARTMENT
        return self.department_codes.get(department, len(self.department_codes))

    def coverage(self, goal: str, taxonomy: Taxonomy) -> Floats:
        """How well each mentor covers a goal (as typed): the best, over the mentor's topics, of
        `criteria.expertise_value` times the topics' credit; 0 without."""
        return self.memo(
            ("goal", goal, taxonomy.version),
            lambda: self._best_credit("goal", taxonomy.credits_by_name(goal)),
        )

    def wants(self, offer: str, taxonomy: Taxonomy) -> Floats:
        """How much each mentor wants to learn what a mentee offers (as typed): the best credit
        of the offer for the mentor's learning interests; 0 without."""
        return self.memo(
            ("offer", offer, taxonomy.version),
            lambda: self._best_credit("offer", taxonomy.covering_by_name(offer)),
        )

    def memo(self, key: tuple[object, ...], compute: Callable[[], NDArray[Any]]) -> NDArray[Any]:
        """`compute()` for one fact of a mentee (`key`), once per pool: read-only, because the
        next mentee with the same fact reads the same array."""
        found = self._memo.pop(key, None)
        if found is not None:
            self._memo[key] = found  # kept last: the least recently used goes first
            return found
        value = compute()
        if self._memo and (len(self._memo) + 1) * len(self) > COVERAGE_FLOATS:
            del self._memo[next(iter(self._memo))]
        value.flags.writeable = False
        self._memo[key] = value
        return value

    def _best_credit(self, kind: str, credits: dict[str, float]) -> Floats:
        value = np.zeros(len(self))
        for name, credit in credits.items():
            if kind == "goal" and (offered := self.expertise.get(name)) is not None:
                rows, levels = offered
                np.maximum.at(value, rows, credit * levels)
            elif kind == "offer" and (wanting := self.interests.get(name)) is not None:
                np.maximum.at(value, wanting, credit)
        return value

    def take_slot(self, mentor_id: str) -> None:
        self._changed(self.index[mentor_id], load=1)

    def free_slot(self, mentor_id: str) -> None:
        self._changed(self.index[mentor_id], load=-1)

    def change_capacity(self, mentor_id: str, by: int) -> None:
        self._changed(self.index[mentor_id], capacity=by)

    def _changed(self, row: int, load: int = 0, capacity: int = 0) -> None:
        """The one way a load or capacity changes: `free` and the `load` criterion follow it
        (computed by the same function on the one mentor: the same floats as on the whole pool)."""
        self.load[row] += load
        self.capacity[row] += capacity
        self.free[row] = self.load[row] < self.capacity[row]
        one = slice(row, row + 1)
        self.load_value[row] = criteria.load(self.load[one], self.capacity[one])[0]


@dataclass(frozen=True)
class Candidate:
    mentor: Mentor
    score: float
    values: dict[str, float]  # each criterion's value in 0..1
    load: int  # the mentor's open proposals and matches when ranked


def criteria_values(pool: MentorPool, mentee: Mentee, config: ProgramConfig) -> Values:
    """Each criterion's value for every mentor of the pool, in 0..1.

    Each array depends on one fact of the mentee (goals, offers, languages, time zone,
    seniority, department), so the pool computes it once per distinct fact (`memo`)."""
    n = len(pool)
    taxonomy = config.taxonomy

    def fit() -> Floats:
        weights = [criteria.goal_weight(priority) for _, priority in mentee.goals]
        return criteria.topic_fit(
            zip(weights, (pool.coverage(t, taxonomy) for t, _ in mentee.goals), strict=True),
            criteria.total_weight(sum(weights)),
            (n,),
        )

    def shared() -> Floats:
        spoken = np.zeros(n)
        for code in mentee.languages:
            if code in pool.languages:
                spoken += pool.languages[code]
        return spoken

    def gap() -> Floats:
        offset = criteria.utc_offset_hours(mentee.timezone, pool.now)
        return criteria.gap_hours(pool.utc_offset, offset)

    def seniority_gap() -> Floats:
        return pool.seniority - (np.nan if mentee.seniority is None else mentee.seniority)

    languages = pool.memo(("shared", mentee.languages), shared)
    hours = pool.memo(("gap", mentee.timezone), gap)
    levels = pool.memo(("seniority_gap", mentee.seniority), seniority_gap)
    code = pool.department_of(mentee.department)
    prefers_same = config.rules.department == "same"
    mentee_department = np.broadcast_to(np.int64(code), (n,))
    return Values(
        topic_fit=fit(),  # goals vary most: each goal's coverage is what the pool keeps
        languages=pool.memo(
            ("languages", mentee.languages),
            lambda: criteria.languages(languages, criteria.spoken_count(mentee.languages)),
        ),
        timezone=pool.memo(("timezone", mentee.timezone), lambda: criteria.timezone(hours)),
        seniority=pool.memo(("seniority", mentee.seniority), lambda: criteria.seniority(levels)),
        department=pool.memo(
            ("department", code, prefers_same),
            lambda: criteria.department(mentee_department, pool.department_code, prefers_same),
        ),
        reputation=pool.reputation,
        load=pool.load_value.copy(),  # the pool's own changes as places are taken
        mutual_learning=pool.memo(
            ("mutual", mentee.offers, taxonomy.version),
            lambda: criteria.mutual_learning(
                (pool.wants(offer, taxonomy) for offer in mentee.offers),
                criteria.offer_count(mentee.offers),
                (n,),
            ),
        ),
        shared_languages=languages,
        gap_hours=hours,
        seniority_gap=levels,
        mentee_department=mentee_department,
        mentor_department=pool.department_code,
    )


def eligible(
    pool: MentorPool,
    mentee: Mentee,
    config: ProgramConfig,
    values: Values,
    excluded: Iterable[str] = (),
) -> Bools:
    """The hard rules, never broken: language, topics, self, manager, past refusals, capacity,
    program rules."""
    ok = criteria.allowed(values, config.rules) & pool.free
    ok[_rows(pool, (mentee.person_id, mentee.manager_id, *excluded))] = False
    return ok


def _rows(pool: MentorPool, people: Iterable[str | None]) -> list[int]:
    return [pool.index[p] for p in people if p is not None and p in pool.index]


def rank(
    pool: MentorPool,
    mentee: Mentee,
    config: ProgramConfig,
    excluded: Iterable[str] = (),
    limit: int | None = None,
) -> list[Candidate]:
    """The eligible mentors, best first (ties broken by mentor id for reproducibility)."""
    if not len(pool):
        return []
    values = criteria_values(pool, mentee, config)
    return _ranked(pool, config, values, eligible(pool, mentee, config, values, excluded), limit)


def best_or_reason(
    pool: MentorPool, mentee: Mentee, config: ProgramConfig, excluded: Iterable[str] = ()
) -> Candidate | WaitingReason:
    """The mentee's best eligible mentor, or why there is none (`waiting_reason`)."""
    if not len(pool):
        return "no_mentor"
    excluded = tuple(excluded)
    values = criteria_values(pool, mentee, config)
    best = _ranked(pool, config, values, eligible(pool, mentee, config, values, excluded), 1)
    return best[0] if best else waiting_reason(pool, mentee, config, values, excluded)


def waiting_reason(
    pool: MentorPool,
    mentee: Mentee,
    config: ProgramConfig,
    values: Values,
    excluded: Sequence[str] = (),
) -> WaitingReason:
    """Why no mentor can be proposed: the first rule, in this order, that leaves none (the
    contract's `mentee-waiting` lists them): a common language, a goal covered, the program's
    rules (the mentee's manager and themself included), pairs not proposed before, a free place."""
    ok = np.ones(len(pool), dtype=bool)
    ok[_rows(pool, (mentee.person_id,))] = False
    steps: list[tuple[WaitingReason, Bools]] = [
        ("no_common_language", criteria.speaks_with(values.shared_languages)),
        ("no_topic", criteria.fits_topics(values.topic_fit, config.rules.min_topic_fit)),
        ("program_rule", criteria.program_allows(values, config.rules)),
        ("already_proposed", np.ones(len(pool), dtype=bool)),
        ("no_free_place", pool.free.copy()),
    ]
    steps[2][1][_rows(pool, (mentee.manager_id,))] = False
    steps[3][1][_rows(pool, excluded)] = False
    for reason, passes in steps:
        ok &= passes
        if not ok.any():
            return reason
    return "no_free_place"  # unreachable while `eligible` applies the same rules


def _ranked(
    pool: MentorPool, config: ProgramConfig, values: Values, ok: Bools, limit: int | None
) -> list[Candidate]:
    scores = values.score(config.normalised_weights())
    rows = np.flatnonzero(ok)
    k = min(limit or config.candidates, len(rows))
    if k == 0:
        return []
    if k < len(rows):  # the k best, and every mentor tied with the last, for the id to decide
        best = scores[rows]
        cut = best.max() if k == 1 else np.partition(best, len(rows) - k)[len(rows) - k]
        rows = rows[best >= cut]
    ordered = sorted(rows, key=lambda i: (-scores[i], pool.mentors[i].person_id))[:k]
    return [
        Candidate(
            pool.mentors[i],
            float(scores[i]),
            {c: float(values.of(c)[i]) for c in CRITERIA},
            int(pool.load[i]),
        )
        for i in ordered
    ]
