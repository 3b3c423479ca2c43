"""Explanations: each criterion's weight, contribution and a sentence a person can read.

Contributions are rounded to four decimals and the score is their sum, so what people read adds up.
"""

from __future__ import annotations

from services.matching.domain.config import CRITERIA, ProgramConfig
from services.matching.domain.scoring import (
    RATING_PRIOR_WEIGHT,
    Candidate,
    Mentee,
    language_list,
    utc_offset_hours,
)
from services.matching.domain.topics import normalise_topic
from shared.contract.events import ExplanationItem


def explain(
    candidate: Candidate, mentee: Mentee, config: ProgramConfig, now: object
) -> tuple[float, list[ExplanationItem]]:
    """The proposal's score and its explanation, criterion by criterion."""
    weights = config.normalised_weights()
    items = []
    for criterion in CRITERIA:
        weight = round(weights[criterion], 4)
        contribution = round(weights[criterion] * candidate.values[criterion], 4)
        items.append(
            ExplanationItem(
                criterion=criterion,
                weight=weight,
                contribution=contribution,
                reason=_REASONS[criterion](candidate, mentee, config, now),
            )
        )
    return round(sum(i.contribution for i in items), 4), items


def _topic_fit(c: Candidate, mentee: Mentee, _: ProgramConfig, __: object) -> str:
    offered = {normalise_topic(t) for t, _ in c.mentor.expertise}
    goals = [t for t, _ in sorted(mentee.goals, key=lambda g: g[1])]
    covered = [t for t in goals if normalise_topic(t) in offered]
    if not covered:
        return (
            f"Does not cover your goal: {goals[0]}"
            if len(goals) == 1
            else "Covers none of your goals"
        )
    if len(covered) == len(goals) == 1:
        return f"Covers your goal: {covered[0]}"
    return f"Covers {len(covered)} of your {len(goals)} goals: {', '.join(covered)}"


def _languages(c: Candidate, mentee: Mentee, _: ProgramConfig, __: object) -> str:
    shared = [code for code in mentee.languages if code in c.mentor.languages]
    return f"You both speak {language_list(shared)}"


def _timezone(c: Candidate, mentee: Mentee, _: ProgramConfig, now: object) -> str:
    gap = abs(utc_offset_hours(c.mentor.timezone, now) - utc_offset_hours(mentee.timezone, now))  # type: ignore[arg-type]
    gap = min(gap, 24 - gap)
    if gap == 0:
        return "You are in the same time zone"
    hours = f"{gap:g} hour" + ("" if gap == 1 else "s")
    return f"Your time zones are {hours} apart"


def _seniority(c: Candidate, mentee: Mentee, _: ProgramConfig, __: object) -> str:
    if c.mentor.seniority is None or mentee.seniority is None:
        return "Seniority not known for both of you"
    gap = c.mentor.seniority - mentee.seniority
    if gap > 0:
        return f"Your mentor is {gap} level{'s' if gap > 1 else ''} more senior"
    if gap == 0:
        return "You are at the same seniority level"
    return f"Your mentor is {-gap} level{'s' if gap < -1 else ''} less senior"


def _department(c: Candidate, mentee: Mentee, config: ProgramConfig, __: object) -> str:
    if c.mentor.department is None or mentee.department is None:
        return "Department not known for both of you"
    if c.mentor.department == mentee.department:
        return "You work in the same department"
    return "You work in different departments: a fresh perspective"


def _reputation(c: Candidate, _: Mentee, __: ProgramConfig, ___: object) -> str:
    count = c.mentor.rating_count
    if count == 0:
        return "New mentor: no ratings yet"
    average = c.mentor.rating_sum / count
    note = " (few ratings so far, so it counts less)" if count < RATING_PRIOR_WEIGHT else ""
    return f"Rated {average:.1f}/5 by mentees over {count} session{'s' if count > 1 else ''}{note}"


def _load(c: Candidate, _: Mentee, __: ProgramConfig, ___: object) -> str:
    free = c.mentor.capacity - c.load
    return f"Has {free} of {c.mentor.capacity} mentoring places free"


_REASONS = {
    "topic_fit": _topic_fit,
    "languages": _languages,
    "timezone": _timezone,
    "seniority": _seniority,
    "department": _department,
    "reputation": _reputation,
    "load": _load,
}
