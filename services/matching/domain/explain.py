"""Explanations: each criterion's weight, contribution, facts and an English sentence.

Contributions are rounded to four decimals and the score is their sum, so what people read adds up.
The facts are read with the same helpers the criteria are computed with (`criteria`); the v1
sentence is written from them, and notifications writes each side its own from them too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from services.matching.domain import criteria
from services.matching.domain.config import CRITERIA, ProgramConfig
from services.matching.domain.scoring import Candidate, Mentee
from services.matching.domain.topics import Taxonomy
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
        facts = _FACTS[criterion](candidate, mentee, config.taxonomy, now)
        items.append(
            ExplanationItem(
                criterion=criterion,
                weight=weight,
                contribution=contribution,
                reason=_REASONS[criterion](facts),
                facts=facts,
            )
        )
    return round(sum(i.contribution for i in items), 4), items


# --- facts: what each criterion was computed from (the contract lists them) -------------------

Facts = dict[str, Any]


def best_cover(
    wanted: str, offered: Sequence[tuple[str, float]], taxonomy: Taxonomy
) -> tuple[str | None, float]:
    """The offered topic (as typed, with its value in 0..1) covering `wanted` best, and how well
    (value times the topics' credit): (None, 0) when none does. Ties go to the first offered."""
    best: tuple[str | None, float] = (None, 0.0)
    for topic, value in offered:
        cover = taxonomy.credit(wanted, topic) * value
        if cover > best[1]:
            best = (topic, cover)
    return best


def _topic_facts(c: Candidate, mentee: Mentee, taxonomy: Taxonomy, _: datetime) -> Facts:
    """Each goal, and how it is covered: `through` names the mentor's topic when it is another
    topic than the goal (related, broader or narrower), `credit` is that relation's credit."""
    offered = [(t, criteria.expertise_value(level)) for t, level in c.mentor.expertise]
    goals = []
    for topic, priority in criteria.by_importance(mentee.goals):
        through, _cover = best_cover(topic, offered, taxonomy)
        same = through is not None and taxonomy.key(through) == taxonomy.key(topic)
        goals.append(
            {
                "topic": topic,
                "priority": priority,
                "covered": through is not None,
                "through": None if through is None or same else through,
                "credit": 0.0 if through is None else round(taxonomy.credit(topic, through), 4),
            }
        )
    return {
        "goals": goals,
        "covered": [g["topic"] for g in goals if g["covered"]],
        "not_covered": [g["topic"] for g in goals if not g["covered"]],
    }


def _mutual_facts(c: Candidate, mentee: Mentee, taxonomy: Taxonomy, _: datetime) -> Facts:
    """What the mentee offers that the mentor would like to learn (`shared`, each with the
    mentor's interest it answers), and the other offers."""
    shared, others = [], []
    for offer in mentee.offers:
        # the interest this offer covers best: as if the interest were a goal, the offer expertise
        interest, _cover = max(
            ((t, taxonomy.credit(t, offer)) for t in c.mentor.learning_interests),
            key=lambda pair: pair[1],
            default=(None, 0.0),
        )
        if interest is None or _cover <= 0:
            others.append(offer)
        else:
            shared.append({"topic": offer, "interest": interest})
    return {"shared": shared, "not_wanted": others}


def _language_facts(c: Candidate, mentee: Mentee, _: Taxonomy, __: datetime) -> Facts:
    return {"shared": [code for code in mentee.languages if code in c.mentor.languages]}


def _timezone_facts(c: Candidate, mentee: Mentee, _: Taxonomy, now: datetime) -> Facts:
    gap = criteria.gap_hours(
        criteria.utc_offset_hours(c.mentor.timezone, now),
        criteria.utc_offset_hours(mentee.timezone, now),
    )
    return {"hours_apart": float(gap)}


def _seniority_facts(c: Candidate, mentee: Mentee, _: Taxonomy, __: datetime) -> Facts:
    if c.mentor.seniority is None or mentee.seniority is None:
        return {"gap": None}
    return {"gap": c.mentor.seniority - mentee.seniority}


def _department_facts(c: Candidate, mentee: Mentee, _: Taxonomy, __: datetime) -> Facts:
    if c.mentor.department is None or mentee.department is None:
        return {"relation": "unknown"}
    return {"relation": "same" if c.mentor.department == mentee.department else "different"}


def _reputation_facts(c: Candidate, _: Mentee, __: Taxonomy, ___: datetime) -> Facts:
    count = c.mentor.rating_count
    return {
        "rating_mean": round(c.mentor.rating_sum / count, 2) if count else None,
        "rating_count": count,
        "provisional": count < criteria.RATING_PRIOR_WEIGHT,  # few ratings: it counts less
    }


def _load_facts(c: Candidate, _: Mentee, __: Taxonomy, ___: datetime) -> Facts:
    return {"free_places": c.mentor.capacity - c.load, "capacity": c.mentor.capacity}


_FACTS: dict[str, Callable[[Candidate, Mentee, Taxonomy, datetime], Facts]] = {
    "topic_fit": _topic_facts,
    "languages": _language_facts,
    "timezone": _timezone_facts,
    "seniority": _seniority_facts,
    "department": _department_facts,
    "reputation": _reputation_facts,
    "load": _load_facts,
    "mutual_learning": _mutual_facts,
}


# --- reasons: the v1 English sentence, to the mentee, written from the facts -----------------


def _topic_fit(f: Facts) -> str:
    goals = [g["topic"] for g in f["goals"]]
    covered = [_how(g) for g in f["goals"] if g["covered"]]
    if not covered:
        return (
            f"Does not cover your goal: {goals[0]}"
            if len(goals) == 1
            else "Covers none of your goals"
        )
    if len(covered) == len(goals) == 1:
        return f"Covers your goal: {covered[0]}"
    return f"Covers {len(covered)} of your {len(goals)} goals: {', '.join(covered)}"


def _how(goal: Facts) -> str:
    """A covered goal, and through which topic when another: "python (through django)"."""
    through = goal.get("through")
    return f"{goal['topic']} (through {through})" if through else str(goal["topic"])


def _mutual_learning(f: Facts) -> str:
    shared = [s["topic"] for s in f["shared"]]
    if not shared:
        return "Nothing you offer is on your mentor's wish list yet"
    return f"You can share {', '.join(shared)}: your mentor would like to learn it"


def _languages(f: Facts) -> str:
    return f"You both speak {language_list(f['shared'])}"


def _timezone(f: Facts) -> str:
    gap = f["hours_apart"]
    if gap == 0:
        return "You are in the same time zone"
    hours = f"{gap:g} hour" + ("" if gap == 1 else "s")
    return f"Your time zones are {hours} apart"


def _seniority(f: Facts) -> str:
    gap = f["gap"]
    if gap is None:
        return "Seniority not known for both of you"
    if gap > 0:
        return f"Your mentor is {gap} level{'s' if gap > 1 else ''} more senior"
    if gap == 0:
        return "You are at the same seniority level"
    return f"Your mentor is {-gap} level{'s' if gap < -1 else ''} less senior"


def _department(f: Facts) -> str:
    return {
        "unknown": "Department not known for both of you",
        "same": "You work in the same department",
        "different": "You work in different departments: a fresh perspective",
    }[f["relation"]]


def _reputation(f: Facts) -> str:
    count = f["rating_count"]
    if count == 0:
        return "New mentor: no ratings yet"
    note = " (few ratings so far, so it counts less)" if f["provisional"] else ""
    sessions = f"{count} session{'s' if count > 1 else ''}"
    return f"Rated {f['rating_mean']:.1f}/5 by mentees over {sessions}{note}"


def _load(f: Facts) -> str:
    return f"Has {f['free_places']} of {f['capacity']} mentoring places free"


_REASONS: dict[str, Callable[[Facts], str]] = {
    "topic_fit": _topic_fit,
    "languages": _languages,
    "timezone": _timezone,
    "seniority": _seniority,
    "department": _department,
    "reputation": _reputation,
    "load": _load,
    "mutual_learning": _mutual_learning,
}


def language_list(codes: Sequence[str]) -> str:
    names = [LANGUAGE_NAMES.get(c, c) for c in codes]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
