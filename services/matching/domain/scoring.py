"""Scoring a program's mentors for one mentee, vectorised over the whole pool with numpy.

Every criterion is a number in 0..1 for each mentor; the score is their weighted mean with the
program's weights (normalised to sum to 1), so each criterion's contribution is weight x value
and the contributions add up to the score. Hard rules are a boolean mask applied before ranking.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import NDArray

from services.matching.domain.config import CRITERIA, ProgramConfig
from services.matching.domain.topics import normalise_topic

RATING_PRIOR = 4.0  # what we assume of a mentor nobody has rated yet (on 1..5)
RATING_PRIOR_WEIGHT = 5  # ratings needed before a mentor's own average counts as much as the prior
IDEAL_SENIORITY_GAP = (1, 4)

LANGUAGE_NAMES = {
    "ar": "Arabic",
    "de": "German",
    "en": "English",
    "es": "Spanish",
    "fr": "French",
    "hi": "Hindi",
    "it": "Italian",
    "ja": "Japanese",
    "ko": "Korean",
    "nl": "Dutch",
    "pl": "Polish",
    "pt": "Portuguese",
    "ru": "Russian",
    "sv": "Swedish",
    "tr": "Turkish",
    "uk": "Ukrainian",
    "zh": "Chinese",
}


def utc_offset_hours(timezone: str, at: datetime) -> float:
    offset = at.astimezone(ZoneInfo(timezone)).utcoffset()
    return offset.total_seconds() / 3600 if offset else 0.0


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


@dataclass(frozen=True)
class Mentee(Person):
    goals: tuple[tuple[str, int], ...] = ()  # (topic, priority 1..3)
    waiting_since: datetime | None = None


@dataclass
class MentorPool:
    """A program's mentors as columns, so one mentee is scored against all of them at once."""

    mentors: list[Mentor]
    now: datetime
    index: dict[str, int] = field(init=False)
    languages: dict[str, NDArray[np.bool_]] = field(init=False)
    utc_offset: NDArray[np.float64] = field(init=False)
    seniority: NDArray[np.float64] = field(init=False)
    department: NDArray[np.object_] = field(init=False)
    department_code: NDArray[np.int64] = field(init=False)  # -1 when unknown: fast comparisons
    department_codes: dict[str, int] = field(init=False)
    capacity: NDArray[np.int64] = field(init=False)
    load: NDArray[np.int64] = field(init=False)
    reputation: NDArray[np.float64] = field(init=False)
    expertise: dict[str, tuple[NDArray[np.int64], NDArray[np.float64]]] = field(init=False)

    def __post_init__(self) -> None:
        n = len(self.mentors)
        self.index = {m.person_id: i for i, m in enumerate(self.mentors)}
        offsets = {tz: utc_offset_hours(tz, self.now) for tz in {m.timezone for m in self.mentors}}
        self.utc_offset = np.array([offsets[m.timezone] for m in self.mentors], dtype=float)
        self.seniority = np.array(
            [np.nan if m.seniority is None else m.seniority for m in self.mentors], dtype=float
        )
        self.department = np.array([m.department for m in self.mentors], dtype=object)
        self.department_codes = {
            d: i for i, d in enumerate(sorted({m.department for m in self.mentors if m.department}))
        }
        self.department_code = np.array(
            [
                self.department_codes.get(m.department, -1) if m.department else -1
                for m in self.mentors
            ],
            dtype=np.int64,
        )
        self.capacity = np.array([m.capacity for m in self.mentors], dtype=np.int64)
        self.load = np.array([m.load for m in self.mentors], dtype=np.int64)
        sums = np.array([m.rating_sum for m in self.mentors], dtype=float)
        counts = np.array([m.rating_count for m in self.mentors], dtype=float)
        mean = (sums + RATING_PRIOR * RATING_PRIOR_WEIGHT) / (counts + RATING_PRIOR_WEIGHT)
        self.reputation = np.clip((mean - 1.0) / 4.0, 0.0, 1.0)
        self.languages = {}
        topics: dict[str, tuple[list[int], list[float]]] = {}
        for i, m in enumerate(self.mentors):
            for code in m.languages:
                self.languages.setdefault(code, np.zeros(n, dtype=bool))[i] = True
            for topic, level in m.expertise:
                rows, levels = topics.setdefault(normalise_topic(topic), ([], []))
                rows.append(i)
                levels.append(level / 5.0)
        self.expertise = {
            t: (np.array(rows, dtype=np.int64), np.array(levels))
            for t, (rows, levels) in topics.items()
        }

    def __len__(self) -> int:
        return len(self.mentors)

    def take_slot(self, mentor_id: str) -> None:
        self.load[self.index[mentor_id]] += 1


@dataclass(frozen=True)
class Candidate:
    mentor: Mentor
    score: float
    values: dict[str, float]  # each criterion's value in 0..1
    load: int  # the mentor's open proposals and matches when ranked


def criteria_values(
    pool: MentorPool, mentee: Mentee, config: ProgramConfig
) -> dict[str, NDArray[np.float64]]:
    """Each criterion's value for every mentor of the pool, in 0..1."""
    n = len(pool)
    # Topic fit: goals weighted by priority (1 -> 3, 2 -> 2, 3 -> 1) against expertise level / 5.
    fit = np.zeros(n)
    goal_weights = [(normalise_topic(t), 4 - p) for t, p in mentee.goals]
    total = sum(w for _, w in goal_weights) or 1
    for topic, weight in goal_weights:
        if topic in pool.expertise:
            rows, levels = pool.expertise[topic]
            fit[rows] += weight * levels
    fit /= total

    shared = np.zeros(n)
    for code in mentee.languages:
        if code in pool.languages:
            shared += pool.languages[code]
    languages = shared / max(len(mentee.languages), 1)

    gap_hours = np.abs(pool.utc_offset - utc_offset_hours(mentee.timezone, pool.now))
    gap_hours = np.minimum(gap_hours, 24 - gap_hours)
    timezone = np.clip(1 - gap_hours / 12, 0, 1)

    if mentee.seniority is None:
        seniority = np.full(n, 0.5)
    else:
        gap = pool.seniority - mentee.seniority
        low, high = IDEAL_SENIORITY_GAP
        seniority = np.where(
            gap < low, 0.0, np.where(gap <= high, 1.0, np.clip(1 - (gap - high) / 5, 0, 1))
        )
        seniority = np.where(np.isnan(gap), 0.5, seniority)

    if mentee.department is None:
        department = np.full(n, 0.5)
    else:
        same = pool.department_code == pool.department_codes.get(mentee.department, -2)
        unknown = pool.department_code < 0
        prefers_same = config.rules.department == "same"
        department = np.where(unknown, 0.5, np.where(same == prefers_same, 1.0, 0.0)).astype(float)

    load = 1 - pool.load / np.maximum(pool.capacity, 1)
    values = {
        "topic_fit": fit,
        "languages": languages,
        "timezone": timezone,
        "seniority": seniority,
        "department": department,
        "reputation": pool.reputation,
        "load": np.clip(load, 0, 1),
    }
    values["_shared_languages"] = shared
    values["_gap_hours"] = gap_hours
    return values


def eligible(
    pool: MentorPool,
    mentee: Mentee,
    config: ProgramConfig,
    values: dict[str, NDArray[np.float64]],
    excluded: Iterable[str] = (),
) -> NDArray[np.bool_]:
    """The hard rules, never broken: language, self, manager, past refusals, capacity, program rules."""
    ok = (values["_shared_languages"] > 0) & (pool.load < pool.capacity)
    for person in (mentee.person_id, mentee.manager_id, *excluded):
        if person is not None and person in pool.index:
            ok[pool.index[person]] = False
    rules = config.rules
    if rules.max_timezone_difference_hours is not None:
        ok &= values["_gap_hours"] <= rules.max_timezone_difference_hours
    if rules.department != "any":
        mentee_code = pool.department_codes.get(mentee.department, -2) if mentee.department else -1
        same = pool.department_code == mentee_code  # two unknown departments count as the same
        ok &= same if rules.department == "same" else ~same
        if rules.department == "same" and mentee.department is None:
            ok[:] = False
    if rules.min_seniority_gap is not None and mentee.seniority is not None:
        gap = pool.seniority - mentee.seniority
        ok &= np.isnan(gap) | (gap >= rules.min_seniority_gap)
    return ok


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
    ok = eligible(pool, mentee, config, values, excluded)
    weights = config.normalised_weights()
    scores: NDArray[np.float64] = sum(
        (weights[c] * values[c] for c in CRITERIA), np.zeros(len(pool))
    )
    rows = np.flatnonzero(ok)
    k = min(limit or config.candidates, len(rows))
    if k == 0:
        return []
    if k < len(rows):
        rows = rows[np.argpartition(-scores[rows], k - 1)[:k]]
    ordered = sorted(rows, key=lambda i: (-scores[i], pool.mentors[i].person_id))
    return [
        Candidate(
            pool.mentors[i],
            float(scores[i]),
            {c: float(values[c][i]) for c in CRITERIA},
            int(pool.load[i]),
        )
        for i in ordered
    ]


def language_list(codes: Sequence[str]) -> str:
    names = [LANGUAGE_NAMES.get(c, c) for c in codes]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
