"""Explanations: each criterion's weight, contribution and a sentence a person can read.

Contributions are rounded to four decimals and the score is their sum, so what people read adds up.
Each sentence reads the facts its criterion is computed from, with the same helpers (`criteria`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from services.matching.domain import criteria
from services.matching.domain.config import CRITERIA, ProgramConfig
from services.matching.domain.scoring import Candidate, Mentee
from services.matching.domain.topics import normalise_topic
from shared.contract.events import ExplanationItem

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


def explain(
    candidate: Candidate, mentee: Mentee, config: ProgramConfig, now: datetime
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
                reason=_REASONS[criterion](candidate, mentee, now),
            )
        )
    return round(sum(i.contribution for i in items), 4), items


def _topic_fit(c: Candidate, mentee: Mentee, _: datetime) -> str:
    offered = {normalise_topic(t) for t, _ in c.mentor.expertise}
    goals = [t for t, _ in criteria.by_importance(mentee.goals)]
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


def _languages(c: Candidate, mentee: Mentee, _: datetime) -> str:
    shared = [code for code in mentee.languages if code in c.mentor.languages]
    return f"You both speak {language_list(shared)}"


def _timezone(c: Candidate, mentee: Mentee, now: datetime) -> str:
    gap = float(
        criteria.gap_hours(
            criteria.utc_offset_hours(c.mentor.timezone, now),
            criteria.utc_offset_hours(mentee.timezone, now),
        )
    )
    if gap == 0:
        return "You are in the same time zone"
    hours = f"{gap:g} hour" + ("" if gap == 1 else "s")
    return f"Your time zones are {hours} apart"


def _seniority(c: Candidate, mentee: Mentee, _: datetime) -> str:
    if c.mentor.seniority is None or mentee.seniority is None:
        return "Seniority not known for both of you"
    gap = c.mentor.seniority - mentee.seniority
    if gap > 0:
        return f"Your mentor is {gap} level{'s' if gap > 1 else ''} more senior"
    if gap == 0:
        return "You are at the same seniority level"
    return f"Your mentor is {-gap} level{'s' if gap < -1 else ''} less senior"


def _department(c: Candidate, mentee: Mentee, _: datetime) -> str:
    if c.mentor.department is None or mentee.department is None:
        return "Department not known for both of you"
    if c.mentor.department == mentee.department:
        return "You work in the same department"
    return "You work in different departments: a fresh perspective"


def _reputation(c: Candidate, _: Mentee, __: datetime) -> str:
    count = c.mentor.rating_count
    if count == 0:
        return "New mentor: no ratings yet"
    average = c.mentor.rating_sum / count
    note = (
        " (few ratings so far, so it counts less)" if count < criteria.RATING_PRIOR_WEIGHT else ""
    )
    return f"Rated {average:.1f}/5 by mentees over {count} session{'s' if count > 1 else ''}{note}"


def _load(c: Candidate, _: Mentee, __: datetime) -> str:
    free = c.mentor.capacity - c.load
    return f"Has {free} of {c.mentor.capacity} mentoring places free"


_REASONS: dict[str, Callable[[Candidate, Mentee, datetime], str]] = {
    "topic_fit": _topic_fit,
    "languages": _languages,
    "timezone": _timezone,
    "seniority": _seniority,
    "department": _department,
    "reputation": _reputation,
    "load": _load,
}


def language_list(codes: Sequence[str]) -> str:
    names = [LANGUAGE_NAMES.get(c, c) for c in codes]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
