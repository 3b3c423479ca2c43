"""The eight criteria and the hard rules, each defined once.

Each criterion is a value in 0..1 computed element-wise on numpy arrays of (mentee, mentor)
pairs, so the mentee-by-mentee scorer (`scoring`) and the cohort's batch scorer (`candidates`)
broadcast the very same functions and get the very same floats. `Values` holds a set of pairs'
values, with the facts the hard rules and explanations read beside them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import overload
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import NDArray

from services.matching.domain.config import CRITERIA
from shared.contract.events import ProgramRules

Ints = NDArray[np.int64]
Floats = NDArray[np.float64]
Bools = NDArray[np.bool_]

HIGHEST_LEVEL = 5.0  # expertise levels are 1..5
LOWEST_RATING, HIGHEST_RATING = 1, 5
RATING_PRIOR = 4.0  # what we assume of a mentor nobody has rated yet
RATING_PRIOR_WEIGHT = 5  # ratings needed before a mentor's own average counts as much as the prior
TIMEZONE_HORIZON = 12  # hours apart at which the time zone is worth nothing (the farthest two are)
IDEAL_SENIORITY_GAP = (1, 4)  # the mentor's levels above the mentee that are best
SENIORITY_FADE = 5  # levels beyond the ideal gap over which seniority falls to 0
UNKNOWN = 0.5  # the value of a fact not known for both: neither good nor bad
NO_DEPARTMENT = -1  # department code when not known


@dataclass(frozen=True)
class Values:
    """Each criterion's value for some pairs, every array of the pairs' shape, and the facts the
    hard rules and explanations read."""

    topic_fit: Floats
    languages: Floats
    timezone: Floats
    seniority: Floats
    department: Floats
    reputation: Floats
    load: Floats
    mutual_learning: Floats
    shared_languages: Floats  # how many of the mentee's languages the mentor speaks
    gap_hours: Floats  # between their time zones, now
    seniority_gap: Floats  # the mentor's level minus the mentee's, NaN when either is not known
    mentee_department: Ints  # department codes, NO_DEPARTMENT when not known
    mentor_department: Ints

    def of(self, criterion: str) -> Floats:
        assert criterion in CRITERIA, criterion
        value: Floats = getattr(self, criterion)
        return value

    def score(self, weights: Mapping[str, float]) -> Floats:
        """The weighted sum, always added up in CRITERIA order (so every scorer gets the same bits)."""
        shape = np.broadcast(*(self.of(c) for c in CRITERIA)).shape
        total, term = np.zeros(shape), np.empty(shape)  # in place: no array made per criterion
        for criterion in CRITERIA:
            np.multiply(weights[criterion], self.of(criterion), out=term)
            np.add(total, term, out=total)
        return total


# --- topic fit: the mentee's goals against the mentor's expertise --------------------------------


def goal_weight(priority: int) -> int:
    """Priority 1 (most important) weighs 3, 2 weighs 2, 3 weighs 1."""
    return 4 - priority


def by_importance(goals: Iterable[tuple[str, int]]) -> list[tuple[str, int]]:
    """(topic, priority) goals, the weightiest first."""
    return sorted(goals, key=lambda goal: -goal_weight(goal[1]))


def expertise_value(level: int) -> float:
    return level / HIGHEST_LEVEL


@overload
def total_weight(weight_sum: int) -> int: ...
@overload
def total_weight(weight_sum: Ints) -> Ints: ...
def total_weight(weight_sum: Ints | int) -> Ints | int:
    """What goal weights are divided by: their sum, 1 for a mentee without goals."""
    if isinstance(weight_sum, int):  # one mentee's: the same number, without numpy's cost
        return weight_sum or 1
    return np.where(np.equal(weight_sum, 0), 1, weight_sum)


def topic_fit(
    goals: Iterable[tuple[Ints | int, Floats]], total: Ints | int, shape: tuple[int, ...]
) -> Floats:
    """Each goal's weight times the mentor's coverage of it (`expertise_value` times the topics'
    credit, the best of the mentor's topics; 0 without), summed in the goals' order and divided by
    the mentee's `total_weight`."""
    fit: Floats = np.zeros(shape)
    for weight, coverage in goals:
        fit = fit + weight * coverage
    return np.asarray(fit / total)


def fits_topics(fit: Floats, minimum: float) -> Bools:
    """The hard rule `min_topic_fit`: above 0, at least one goal covered and the fit that high."""
    if minimum <= 0:
        return np.ones(np.shape(fit), dtype=bool)
    return np.asarray((fit > 0) & (fit >= minimum))


# --- mutual learning: what the mentee can share against what the mentor would learn ------------


def offer_count(offers: Sequence[str]) -> int:
    """What the offers' credits are divided by (a mentee offering nothing counts as one)."""
    return max(len(offers), 1)


def mutual_learning(wanted: Iterable[Floats], count: Ints | int, shape: tuple[int, ...]) -> Floats:
    """For each of the mentee's offers, how much the mentor wants to learn it (the best credit
    of the mentor's learning interests it covers, 0 without), summed in the offers' order and
    divided by the mentee's `offer_count`: 1 when the mentor wants all the mentee can share."""
    value: Floats = np.zeros(shape)
    for credit in wanted:
        value = value + credit
    return np.asarray(value / count)


# --- languages -----------------------------------------------------------------------------------


def spoken_count(languages: Sequence[str]) -> int:
    """What shared languages are divided by (a mentee listing none counts as one)."""
    return max(len(languages), 1)


def languages(shared: Floats, spoken: Ints | int) -> Floats:
    """The share of the mentee's languages the mentor speaks."""
    return np.asarray(shared / spoken)


def speaks_with(shared: Floats) -> Bools:
    """The hard rule: they share a language."""
    return np.asarray(shared > 0)


# --- time zone -----------------------------------------------------------------------------------


def utc_offset_hours(timezone: str, at: datetime) -> float:
    offset = at.astimezone(ZoneInfo(timezone)).utcoffset()
    return offset.total_seconds() / 3600 if offset else 0.0


def gap_hours(mentor_offset: Floats | float, mentee_offset: Floats | float) -> Floats:
    """Hours between two UTC offsets, the short way round the clock: in 0..12. Offsets run
    from -12 to +14, so two may be more than 24 hours apart (+14 and -12 are 2 hours apart)."""
    gap = np.abs(np.subtract(mentor_offset, mentee_offset)) % 24
    return np.asarray(np.minimum(gap, 24 - gap))


def timezone(gap: Floats) -> Floats:
    return np.clip(1 - gap / TIMEZONE_HORIZON, 0, 1)


def within_timezone_limit(gap: Floats, limit: float) -> Bools:
    return np.asarray(gap <= limit)


# --- seniority -----------------------------------------------------------------------------------


def seniority(gap: Floats) -> Floats:
    """The mentor's level minus the mentee's: 1 inside the ideal gap, fading above it, 0 below,
    UNKNOWN when either is not known (NaN)."""
    low, high = IDEAL_SENIORITY_GAP
    value = np.where(
        gap < low,
        0.0,
        np.where(gap <= high, 1.0, np.clip(1 - (gap - high) / SENIORITY_FADE, 0, 1)),
    )
    return np.where(np.isnan(gap), UNKNOWN, value)


def senior_enough(gap: Floats, minimum: int) -> Bools:
    """The hard rule: the mentor at least `minimum` levels above (an unknown level never blocks)."""
    return np.asarray(np.isnan(gap) | (gap >= minimum))


# --- department ----------------------------------------------------------------------------------


def department(mentee: Ints | int, mentor: Ints, prefers_same: bool) -> Floats:
    """Department codes: UNKNOWN when either is not known; otherwise 1 when being in the same
    department is what the program prefers (else a different one: a fresh perspective)."""
    return np.where(
        (np.less(mentee, 0)) | (mentor < 0),
        UNKNOWN,
        np.where((mentor == mentee) == prefers_same, 1.0, 0.0),
    )


def department_allowed(mentee: Ints | int, mentor: Ints, rule: str) -> Bools:
    """The hard rule "same" or "cross" (two unknown departments count as the same; "same" needs
    the mentee's to be known)."""
    same = mentor == mentee
    return np.asarray(same & np.greater_equal(mentee, 0) if rule == "same" else ~same)


# --- reputation and load -------------------------------------------------------------------------


def reputation(rating_sum: Floats, rating_count: Floats) -> Floats:
    """The mean rating shrunk towards RATING_PRIOR, on 0..1."""
    mean = (rating_sum + RATING_PRIOR * RATING_PRIOR_WEIGHT) / (rating_count + RATING_PRIOR_WEIGHT)
    return np.clip((mean - LOWEST_RATING) / (HIGHEST_RATING - LOWEST_RATING), 0.0, 1.0)


def load(taken: Ints, capacity: Ints) -> Floats:
    """The share of a mentor's places still free."""
    return np.clip(1 - taken / np.maximum(capacity, 1), 0, 1)


# --- the hard rules a pair's own facts decide ----------------------------------------------------


def allowed(values: Values, rules: ProgramRules) -> Bools:
    """Language, topics and the program's rules. Capacity and the pairs a mentee may never get
    (self, manager, past refusals) are each scorer's own: they know them in different shapes."""
    ok = speaks_with(values.shared_languages) & fits_topics(values.topic_fit, rules.min_topic_fit)
    return ok & program_allows(values, rules)


def program_allows(values: Values, rules: ProgramRules) -> Bools:
    """The program's own rules: time zones, departments, seniority."""
    ok = np.ones(np.shape(values.gap_hours), dtype=bool)
    if rules.max_timezone_difference_hours is not None:
        ok &= within_timezone_limit(values.gap_hours, rules.max_timezone_difference_hours)
    if rules.department != "any":
        ok &= department_allowed(
            values.mentee_department, values.mentor_department, rules.department
        )
    if rules.min_seniority_gap is not None:
        ok &= senior_enough(values.seniority_gap, rules.min_seniority_gap)
    return ok
