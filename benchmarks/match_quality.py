"""match_quality: does matching connect the right people? A simulated program whose people have a
hidden truth no matcher reads, run with four matchers side by side on the same population.

    python -m benchmarks.match_quality [--quick] [--seed N] [--mentors N] [--mentees N] [--months N]

- `population`: mentors and mentees as they describe themselves (languages, time zones, seniority,
  departments, goals and expertise typed in English, in French, by an alias, or a topic the
  taxonomy does not know; offers and learning interests), and beside them the hidden truth
  (`Truth`): how close topics really are, each mentor's true skills, quality and spare time, how
  much each criterion matters to each person, whether a mentor would learn from a mentee.
- `World`: one matcher running the program day by day. People's behaviour follows the hidden
  truth only: answers, sessions, ratings, early endings, closing feedback.
- Matchers see only the profiles: a random eligible mentor, greedy on exact topic names, today's
  fixed weights, and the new matcher (taxonomy, minimum topic fit, mutual learning, learned
  weights). `Checker` checks every proposal against the hard rules from the records alone.
- `best_assignment`: the most total hidden compatibility the same mentees could get.

docs/matching.md ("Measuring match quality") explains the model and the figures. Progress goes to
stderr; the report is one JSON object, the last line on stdout.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads: small matrices, 2 cores

import math
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.stats import spearmanr

from benchmarks._common import arguments, emit, machine
from services.matching.domain.config import CRITERIA, DEFAULT_WEIGHTS, ProgramConfig
from services.matching.domain.criteria import Bools, Floats, Ints, reputation
from services.matching.domain.default_topics import DEFAULT_TOPICS
from services.matching.domain.learning import Outcome, learn, succeeded
from services.matching.domain.scoring import (
    Mentee,
    Mentor,
    MentorPool,
    criteria_values,
    eligible,
    rank,
)
from services.matching.domain.topics import Taxonomy, normalise_topic
from shared.contract.events import ProgramRules
from shared.ops.analytics import both_won, gini

START = datetime(2026, 1, 5, 9, tzinfo=UTC)  # a Monday; day d of the program is START + d days
RULES = ProgramRules(max_timezone_difference_hours=10, min_seniority_gap=1)  # min_topic_fit 0.01
WITHOUT_TOPIC_RULE = RULES.model_copy(update={"min_topic_fit": 0.0})
SIZES = {"full": (600, 2000, 10), "quick": (150, 450, 6)}  # mentors, mentees, months of arrivals

# --- the program and its people's behaviour ------------------------------------------------------
RELATIONSHIP_DAYS = 180  # relationship_length_days
RESPONSE_DAYS = 3  # response_deadline_hours = 72
GIVE_UP_DAYS = 60  # a waiting mentee without a proposal for this long leaves the program
LAUNCH_SHARE = 0.25  # mentees enrolled on day 0 (the program's launch), the others arrive evenly
NO_ANSWER = 0.06  # chance a person never answers a proposal
ACCEPT_SLOPE, ACCEPT_MIDPOINT = 10.0, 0.39  # P(accept) = sigmoid(slope * (utility - midpoint))
EARLY_END_RATE, EARLY_END_SLOPE, EARLY_END_MIDPOINT = 0.45, 7.0, 0.5  # ends per 180 days, at C
NOT_A_FIT_SLOPE = 10.0  # P(reason not_a_fit) = sigmoid(slope * (0.5 - C)), else no_time
SESSIONS_PER_MONTH = (0.8, 1.6)  # base + slope * C
SESSION_RATED = 0.5  # share of sessions the mentee rates
CLOSING_ANSWERED = {"mentee": (0.8, 0.6), "mentor": (0.75, 0.55)}  # completed, ended early
RATING_BASE = 1.8  # ratings are 1..5: RATING_BASE + 4 x a mix of hidden values in 0..1, noisy
ATTENTION_DROP = 0.5  # a full mentor gives each mentee half the attention of an idle one

# --- the hidden truth ----------------------------------------------------------------------------
# How much each criterion's hidden counterpart matters, on average, to mentees and to mentors
# (CRITERIA order). Deliberately not the default weights. Mentors do not weigh their own quality.
MENTEE_IMPORTANCE = (0.28, 0.07, 0.14, 0.10, 0.03, 0.22, 0.10, 0.06)
MENTOR_IMPORTANCE = (0.26, 0.09, 0.16, 0.08, 0.04, 0.00, 0.15, 0.22)
CONCENTRATION = 40.0  # Dirichlet: each person's importance scatters around the mean
OBSERVED_MENTEES = 300  # mentees whose pairs `observability` reads
EMBEDDING_DIMENSIONS = 64
LINK = {"broader": 0.6, "related": 0.7, "hidden": 0.7, "anchor": 0.8}  # pull between topics
TAXONOMY_LINKS_WRONG = 0.15  # share of the taxonomy's relations the hidden truth does not share
HIDDEN_LINKS = 25  # affinities between known topics that the taxonomy does not know
UNKNOWN_TOPICS = {  # topics the taxonomy does not know, with the ones they are truly close to
    "sustainability": ("strategy", "risk management"),
    "esg reporting": ("compliance", "finance"),
    "public policy": ("legal", "strategy"),
    "no-code": ("software engineering", "product management"),
    "prompt engineering": ("generative ai", "writing"),
    "board governance": ("leadership", "legal"),
    "mindfulness": ("wellbeing", "stress management"),
    "podcasting": ("storytelling", "personal branding"),
}
FRESH_SKILLS = {  # what mentees often know better than mentors: offers and learning interests
    "generative ai", "prompt engineering", "data visualisation", "digital marketing", "seo",
    "react", "typescript", "python", "cloud", "docker", "diversity and inclusion",
    "sustainability", "no-code", "podcasting", "personal branding", "user research",
}  # fmt: skip

LANGUAGES = ("en", "fr", "de", "es", "pt")
FIRST_LANGUAGE = (0.55, 0.25, 0.08, 0.07, 0.05)
ZONES = {
    "en": ("America/New_York", "America/Los_Angeles", "Europe/London", "Asia/Singapore",
           "Asia/Kolkata"),
    "fr": ("Europe/Paris", "Europe/Paris", "America/Toronto"),
    "de": ("Europe/Berlin",),
    "es": ("Europe/Madrid", "America/Mexico_City"),
    "pt": ("America/Sao_Paulo", "Europe/Lisbon"),
}  # fmt: skip
DEPARTMENTS = tuple(f"department {i}" for i in range(10))

TOPIC, LANGUAGE, TIMEZONE, SENIORITY, DEPARTMENT, QUALITY, LOAD, MUTUAL = range(len(CRITERIA))


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- topics and how close they truly are ---------------------------------------------------------


@dataclass(frozen=True)
class Topic:
    """A topic's names, as people may type them."""

    english: str
    french: str
    aliases: tuple[str, ...]
    known: bool  # in the shipped taxonomy


def topics() -> list[Topic]:
    shipped = [Topic(e, f, aliases, True) for e, f, _, _, aliases in DEFAULT_TOPICS]
    return shipped + [Topic(name, name, (), False) for name in UNKNOWN_TOPICS]


def hidden_affinity(topic_list: Sequence[Topic], rng: np.random.Generator) -> Floats:
    """How much skill in one topic truly helps with another, 0..1 (1 with itself): cosines of
    hidden embeddings. A topic is pulled towards most of its taxonomy relations, some pairs the
    taxonomy does not relate, and the unknown topics' true neighbours; the rest is chance."""
    index = {normalise_topic(t.english): k for k, t in enumerate(topic_list)}
    links = np.zeros((len(topic_list), len(topic_list)))

    def link(a: str, b: str, kind: str) -> None:
        i, j = index[normalise_topic(a)], index[normalise_topic(b)]
        links[i, j] = links[j, i] = LINK[kind]

    for english, _, broader, related, _ in DEFAULT_TOPICS:
        for kind, others in (("broader", broader), ("related", related)):
            for other in others:
                if rng.random() >= TAXONOMY_LINKS_WRONG:
                    link(english, other, kind)
    known = [k for k, t in enumerate(topic_list) if t.known]
    for _ in range(HIDDEN_LINKS):
        a, b = rng.choice(known, 2, replace=False)
        link(topic_list[a].english, topic_list[b].english, "hidden")
    for name, anchors in UNKNOWN_TOPICS.items():
        for anchor in anchors:
            link(name, anchor, "anchor")
    base = rng.normal(size=(len(topic_list), EMBEDDING_DIMENSIONS))
    embedded = base + links @ base
    embedded /= np.linalg.norm(embedded, axis=1, keepdims=True)
    affinity = np.clip((embedded @ embedded.T - 0.1) / 0.6, 0.0, 1.0)
    np.fill_diagonal(affinity, 1.0)
    return affinity


# --- the population ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Truth:
    """What the simulation knows and no matcher reads. Utilities are each side's, for every
    (mentee, mentor) pair, at a mentor holding nothing yet (see `utilities`)."""

    mentee_weights: Floats  # mentees x criteria: how much each criterion's truth matters
    mentor_weights: Floats  # mentors x criteria
    mentee_utility: Floats  # mentees x mentors, 0..1
    mentor_utility: Floats  # mentees x mentors, 0..1
    goal_help: list[Floats]  # per mentee: goals x mentors, how much the mentor helps with each
    learns: Floats  # mentees x mentors: the chance the mentor learns something from the mentee
    quality: Floats  # per mentor, 0..1
    spare_time: Floats  # per mentor, 0..1
    sample: Ints  # some mentees, for `observability`
    sampled: Floats  # criteria x sample x mentors: each criterion's hidden value, both sides' mean

    def utilities(self, mentee: int, mentor: int, held_share: float) -> tuple[float, float]:
        """Each side's utility when the mentor already holds `held_share` of their places: a busy
        mentor gives less attention (the hidden side of `load`)."""
        busy = ATTENTION_DROP * self.spare_time[mentor] * held_share
        return (
            float(self.mentee_utility[mentee, mentor] - self.mentee_weights[mentee, LOAD] * busy),
            float(self.mentor_utility[mentee, mentor] - self.mentor_weights[mentor, LOAD] * busy),
        )

    def compatibility(self) -> Floats:
        """A pair's hidden compatibility: the mean of both sides' utilities (idle mentor)."""
        return np.asarray((self.mentee_utility + self.mentor_utility) / 2)

    def compatibility_of(self, mentee: int, mentor: int) -> float:
        return float(self.mentee_utility[mentee, mentor] + self.mentor_utility[mentee, mentor]) / 2

    def importance(self) -> dict[str, float]:
        """Each criterion's weight in compatibility, averaged over the population."""
        mean = (self.mentee_weights.mean(axis=0) + self.mentor_weights.mean(axis=0)) / 2
        return {c: round(float(w), 4) for c, w in zip(CRITERIA, mean, strict=True)}


@dataclass(frozen=True)
class Population:
    mentors: list[Mentor]
    mentees: list[Mentee]
    arrival: Ints  # each mentee's day of enrolment
    truth: Truth
    facts: dict[str, Any]  # what the report says of the population


class People:
    """Draws people: their languages, time zones, topics as they type them, and hidden traits."""

    def __init__(self, rng: np.random.Generator, topic_list: list[Topic], affinity: Floats):
        self.rng, self.topics, self.affinity = rng, topic_list, affinity
        t = len(topic_list)
        self.goal_popularity = rng.lognormal(0, 1.0, t)
        self.expertise_popularity = np.exp(
            0.5 * np.log(self.goal_popularity) + rng.normal(0, 0.85, t)
        )
        fresh = np.array([normalise_topic(x.english) in FRESH_SKILLS for x in topic_list])
        self.fresh_popularity = np.where(fresh, 6.0, 1.0) * rng.lognormal(0, 0.5, t)
        self.typed = Counter[str]()

    def languages(self) -> tuple[tuple[str, ...], Floats]:
        """Spoken languages, the first one first, and a hidden fluency in each (0 unspoken)."""
        first = int(self.rng.choice(len(LANGUAGES), p=FIRST_LANGUAGE))
        fluency = np.zeros(len(LANGUAGES))
        fluency[first] = 1.0
        if first != 0 and self.rng.random() < 0.8:
            fluency[0] = self.rng.uniform(0.4, 0.95)
        unspoken = np.flatnonzero(fluency == 0)
        if self.rng.random() < 0.25:  # a third language, or a second one for English speakers
            fluency[self.rng.choice(unspoken)] = self.rng.uniform(0.3, 0.8)
        others = [k for k in np.argsort(-fluency) if fluency[k] > 0 and k != first]
        return tuple(LANGUAGES[k] for k in (first, *others)), fluency

    def timezone(self, first_language: str) -> str:
        return str(self.rng.choice(ZONES[first_language]))

    def topic_set(self, count: int, popularity: Floats) -> list[int]:
        """Topics a person cares about: a first one, then mostly topics truly close to it."""
        chosen = [int(self.rng.choice(len(popularity), p=popularity / popularity.sum()))]
        while len(chosen) < count:
            weights = popularity.copy()
            if self.rng.random() < 0.6:
                weights = weights * self.affinity[chosen[0]] ** 2
            weights[chosen] = 0
            chosen.append(int(self.rng.choice(len(weights), p=weights / weights.sum())))
        return chosen

    def name(self, topic: int, french: bool) -> str:
        """A topic as a person types it: its English name mostly, sometimes its French name
        (more often for French speakers) or an alias, in their own capitalisation."""
        t, u = self.topics[topic], self.rng.random()
        if t.aliases and u < 0.12:
            self.typed["alias"] += 1
            name = str(self.rng.choice(t.aliases))
        elif u < 0.12 + (0.45 if french else 0.05) and t.french != t.english:
            self.typed["french"] += 1
            name = t.french
        else:
            self.typed["english" if t.known else "unknown_topic"] += 1
            name = t.english
        return name.capitalize() if self.rng.random() < 0.3 else name


def population(mentors: int, mentees: int, months: int, seed: int) -> Population:
    """A program's people, seeded: profiles the matchers read, and the hidden truth."""
    rng = np.random.default_rng([seed, 0])
    topic_list = topics()
    affinity = hidden_affinity(topic_list, rng)
    people = People(rng, topic_list, affinity)
    t = len(topic_list)

    mentor_list: list[Mentor] = []
    skill = np.zeros((mentors, t))
    interest = np.zeros((mentors, t), dtype=bool)
    mentor_fluency = np.zeros((mentors, len(LANGUAGES)))
    mentor_level = rng.integers(3, 11, mentors)
    quality = rng.beta(4.0, 2.5, mentors)
    spare_time = rng.beta(4.0, 2.0, mentors)
    for j in range(mentors):
        spoken, mentor_fluency[j] = people.languages()
        french = spoken[0] == "fr"
        expertise = []
        for k in people.topic_set(int(rng.integers(2, 6)), people.expertise_popularity):
            level = int(rng.integers(2, 6))
            skill[j, k] = np.clip(level / 5 + rng.normal(0, 0.15), 0.05, 1.0)
            expertise.append((people.name(k, french), level))
        for k in people.topic_set(3, people.expertise_popularity)[1:]:  # skills not declared
            if skill[j, k] == 0 and rng.random() < 0.4:
                skill[j, k] = rng.uniform(0.3, 0.7)
        interests: list[str] = []
        if rng.random() < 0.7:
            for k in people.topic_set(int(rng.integers(1, 4)), people.fresh_popularity):
                interest[j, k] = True
                if rng.random() < 0.7:
                    interests.append(people.name(k, french))
        ratings = int(rng.integers(1, 21)) if rng.random() < 0.4 else 0
        past = [session_rating(rng, quality[j], rng.uniform(0.3, 0.7)) for _ in range(ratings)]
        mentor_list.append(
            Mentor(
                person_id=f"m{j:05d}",
                languages=spoken,
                timezone=people.timezone(spoken[0]),
                department=None if rng.random() < 0.05 else str(rng.choice(DEPARTMENTS)),
                seniority=None if rng.random() < 0.05 else int(mentor_level[j]),
                expertise=tuple(expertise),
                capacity=int(rng.choice([1, 2, 3], p=[0.4, 0.4, 0.2])),
                rating_sum=sum(past),
                rating_count=len(past),
                learning_interests=tuple(interests),
            )
        )

    mentee_list: list[Mentee] = []
    goals: list[list[int]] = []
    goal_weights: list[Floats] = []
    mentee_skill = np.zeros((mentees, t))
    mentee_fluency = np.zeros((mentees, len(LANGUAGES)))
    mentee_level = rng.integers(1, 7, mentees)
    true_department: list[str] = []
    for i in range(mentees):
        spoken, mentee_fluency[i] = people.languages()
        french = spoken[0] == "fr"
        count = int(rng.choice([1, 2, 3], p=[0.3, 0.4, 0.3]))
        goals.append(people.topic_set(count, people.goal_popularity))
        goal_weights.append(rng.dirichlet(4.0 * np.array([3.0, 2.0, 1.0])[: len(goals[i])]))
        offers = []
        if rng.random() < 0.6:
            for k in people.topic_set(int(rng.integers(1, 3)), people.fresh_popularity):
                mentee_skill[i, k] = rng.uniform(0.4, 1.0)
                if rng.random() < 0.7:
                    offers.append(people.name(k, french))
        department = str(rng.choice(DEPARTMENTS))
        true_department.append(department)
        also_mentor = rng.random() < 0.02
        manager = rng.random() < 0.10
        mentee_list.append(
            Mentee(
                person_id=f"m{rng.integers(mentors):05d}" if also_mentor else f"e{i:05d}",
                languages=spoken,
                timezone=people.timezone(spoken[0]),
                department=None if rng.random() < 0.05 else department,
                seniority=None if rng.random() < 0.05 else int(mentee_level[i]),
                manager_id=f"m{rng.integers(mentors):05d}" if manager else None,
                goals=tuple((people.name(k, french), p + 1) for p, k in enumerate(goals[i])),
                offers=tuple(offers),
            )
        )

    launch = rng.random(mentees) < LAUNCH_SHARE
    arrival = np.where(launch, 0, rng.integers(1, months * 30, mentees))
    mentor_department = [m.department or str(rng.choice(DEPARTMENTS)) for m in mentor_list]
    truth = hidden_truth(
        rng,
        affinity,
        skill=skill,
        interest=interest,
        goals=goals,
        goal_weights=goal_weights,
        mentee_skill=mentee_skill,
        fluency=(mentee_fluency, mentor_fluency),
        zones=([m.timezone for m in mentee_list], [m.timezone for m in mentor_list]),
        levels=(mentee_level, mentor_level),
        departments=(true_department, mentor_department),
        quality=quality,
        spare_time=spare_time,
    )
    facts = {
        "topics": t,
        "topics_unknown_to_taxonomy": len(UNKNOWN_TOPICS),
        "topic_names_typed": dict(sorted(people.typed.items())),
        "mentees_with_offers": sum(bool(m.offers) for m in mentee_list),
        "mentors_with_learning_interests": sum(bool(m.learning_interests) for m in mentor_list),
        "mentor_places": sum(m.capacity for m in mentor_list),
        "mentors_with_past_ratings": sum(m.rating_count > 0 for m in mentor_list),
        "mentees_at_launch": int(launch.sum()),
    }
    return Population(mentor_list, mentee_list, arrival, truth, facts)


def session_rating(rng: np.random.Generator, quality: float, utility: float) -> int:
    """A mentee's rating of a session (1..5): the mentor's quality and the pair's fit, noisy."""
    latent = RATING_BASE + 4 * (0.5 * quality + 0.5 * utility) + rng.normal(0, 0.8)
    return int(np.clip(round(latent), 1, 5))


def hidden_truth(
    rng: np.random.Generator,
    affinity: Floats,
    *,
    skill: Floats,
    interest: Bools,
    goals: list[list[int]],
    goal_weights: list[Floats],
    mentee_skill: Floats,
    fluency: tuple[Floats, Floats],
    zones: tuple[list[str], list[str]],
    levels: tuple[Ints, Ints],
    departments: tuple[list[str], list[str]],
    quality: Floats,
    spare_time: Floats,
) -> Truth:
    """Each criterion's hidden counterpart, a value in 0..1 per pair and side, weighted by each
    person's own importance into their utility."""
    n, m = len(goals), len(quality)
    mentee_weights = rng.dirichlet(CONCENTRATION * np.array(MENTEE_IMPORTANCE), n)
    kept = np.array(MENTOR_IMPORTANCE) > 0
    mentor_weights = np.zeros((m, len(CRITERIA)))
    mentor_weights[:, kept] = rng.dirichlet(CONCENTRATION * np.array(MENTOR_IMPORTANCE)[kept], m)
    mentee_u, mentor_u = np.zeros((n, m)), np.zeros((n, m))
    sample = np.arange(0, n, max(1, n // OBSERVED_MENTEES))
    sampled = np.zeros((len(CRITERIA), len(sample), m))

    def add(criterion: int, mentee_side: Floats, mentor_side: Floats | None = None) -> None:
        mentee_u[:] += mentee_weights[:, criterion, None] * mentee_side
        other = mentee_side if mentor_side is None else mentor_side
        mentor_u[:] += mentor_weights[None, :, criterion] * other
        sampled[criterion] = (mentee_side[sample] + other[sample]) / 2

    # topics: each goal is helped by all the mentor's true skills, through true affinities
    # (a noisy-OR: several close skills add up, none alone needs to be the goal itself)
    help_by_topic = 1 - np.exp(
        np.log1p(-np.minimum(affinity[:, None, :] * skill[None, :, :], 0.999)).sum(axis=2)
    )
    goal_help = [help_by_topic[g] for g in goals]
    add(TOPIC, np.array([w @ h for w, h in zip(goal_weights, goal_help, strict=True)]))
    # languages: the best language both speak, as fluent as the less fluent of the two
    mentee_fluency, mentor_fluency = fluency
    comfort = np.zeros((n, m))
    for k in range(len(LANGUAGES)):
        comfort = np.maximum(comfort, np.minimum.outer(mentee_fluency[:, k], mentor_fluency[:, k]))
    add(LANGUAGE, comfort)
    # time zones: overlap of working days (start 8-10 local, 8 hours, some stretch 0-3 hours)
    offsets = {z: offset_hours(z, START) for z in set(zones[0]) | set(zones[1])}
    starts = [np.array([offsets[z] for z in side]) for side in zones]
    mentee_start = rng.uniform(8, 10, n) - starts[0]
    mentor_start = rng.uniform(8, 10, m) - starts[1]
    gap = np.abs(np.subtract.outer(mentee_start, mentor_start)) % 24
    gap = np.minimum(gap, 24 - gap)
    stretch = np.add.outer(rng.uniform(0, 3, n), rng.uniform(0, 3, m)) / 2
    add(TIMEZONE, np.clip((8 - gap + stretch) / 5, 0, 1))
    # seniority: each person has their own ideal gap, and likes the ones near it
    levels_gap = np.subtract.outer(levels[1], levels[0]).T.astype(float)  # mentor - mentee
    ideal_mentee, ideal_mentor = rng.normal(2.5, 1.0, n), rng.normal(3.0, 1.0, m)
    add(
        SENIORITY,
        np.exp(-((levels_gap - ideal_mentee[:, None]) ** 2) / (2 * 1.5**2)),
        np.exp(-((levels_gap - ideal_mentor[None, :]) ** 2) / (2 * 2.0**2)),
    )
    # department: some want a fresh perspective (another department), others an insider
    different = np.not_equal.outer(np.array(departments[0]), np.array(departments[1]))
    fresh_mentee, fresh_mentor = rng.random(n) < 0.65, rng.random(m) < 0.5
    add(
        DEPARTMENT,
        np.where(different == fresh_mentee[:, None], 1.0, 0.35),
        np.where(different == fresh_mentor[None, :], 1.0, 0.35),
    )
    # quality: the mentor's own (mentors give it no weight in their utility)
    add(QUALITY, np.broadcast_to(quality, (n, m)))
    # load: the mentor's spare time, before any mentee takes some (see Truth.utilities)
    add(LOAD, np.broadcast_to(spare_time, (n, m)))
    # mutual learning: the mentor's true interests against the mentee's true skills, noisy
    closeness = np.zeros((n, len(affinity)))
    for i in np.flatnonzero(mentee_skill.any(axis=1)):
        closeness[i] = (mentee_skill[i, :, None] * affinity).max(axis=0)
    wants = np.zeros((n, m))
    for topic in np.flatnonzero(interest.any(axis=0)):
        rows = np.flatnonzero(interest[:, topic])
        wants[:, rows] = np.maximum(wants[:, rows], closeness[:, topic, None])
    learns = np.clip(0.15 + 0.7 * wants + rng.normal(0, 0.1, (n, m)), 0, 1)
    add(MUTUAL, learns)
    return Truth(
        mentee_weights,
        mentor_weights,
        mentee_u,
        mentor_u,
        goal_help,
        learns,
        quality,
        spare_time,
        sample,
        sampled,
    )


def offset_hours(zone: str, at: datetime) -> float:
    offset = at.astimezone(ZoneInfo(zone)).utcoffset()
    return offset.total_seconds() / 3600 if offset else 0.0


# --- the hard rules, checked from the records alone ----------------------------------------------


class Checker:
    """Every proposal against the hard rules, from the Mentor and Mentee records and its own
    account of who holds what: no code shared with the matchers."""

    def __init__(self, pop: Population, rules: ProgramRules, taxonomy: Taxonomy) -> None:
        self.pop, self.rules, self.taxonomy = pop, rules, taxonomy
        self.capacity = [m.capacity for m in pop.mentors]
        self.held = Counter[int]()  # open proposals and relationships, per mentor
        self.busy: set[int] = set()  # mentees with an open proposal or relationship
        self.pairs: set[tuple[int, int]] = set()  # every pair ever proposed
        self.problems = Counter[str]()

    def proposed(self, mentee: int, mentor: int, day: int) -> None:
        e, m, rules, now = self.pop.mentees[mentee], self.pop.mentors[mentor], self.rules, at(day)
        problems = self.problems
        problems["language"] += not set(e.languages) & set(m.languages)
        problems["self"] += e.person_id == m.person_id
        problems["manager"] += e.manager_id == m.person_id
        problems["pair_again"] += (mentee, mentor) in self.pairs
        problems["capacity"] += self.held[mentor] >= self.capacity[mentor]
        problems["mentee_twice"] += mentee in self.busy
        if rules.max_timezone_difference_hours is not None:
            gap = abs(offset_hours(e.timezone, now) - offset_hours(m.timezone, now)) % 24
            problems["timezone"] += min(gap, 24 - gap) > rules.max_timezone_difference_hours
        if rules.min_seniority_gap is not None and e.seniority and m.seniority:  # unknown: allowed
            problems["seniority"] += m.seniority - e.seniority < rules.min_seniority_gap
        same = e.department == m.department  # two unknown departments count as the same
        if rules.department == "same":
            problems["department"] += e.department is None or not same
        elif rules.department == "cross":
            problems["department"] += same
        if rules.min_topic_fit > 0:
            fit = self.topic_fit(e, m)
            problems["min_topic_fit"] += not (fit > 0 and fit >= rules.min_topic_fit - 1e-12)
        self.pairs.add((mentee, mentor))
        self.held[mentor] += 1
        self.busy.add(mentee)

    def topic_fit(self, mentee: Mentee, mentor: Mentor) -> float:
        """Each goal's weight (priority 1 -> 3, 2 -> 2, 3 -> 1) times the best of the mentor's
        level / 5 times the taxonomy's credit, over the weights' sum."""
        total, weights = 0.0, 0
        for goal, priority in mentee.goals:
            credits = [self.taxonomy.credit(goal, t) * level / 5 for t, level in mentor.expertise]
            total += (4 - priority) * max(credits, default=0.0)
            weights += 4 - priority
        return total / max(weights, 1)

    def released(self, mentee: int, mentor: int) -> None:
        self.held[mentor] -= 1
        self.busy.discard(mentee)

    def capacity_lowered(self, mentor: int) -> None:
        self.capacity[mentor] -= 1

    def report(self) -> dict[str, int]:
        rules = ["language", "self", "manager", "pair_again", "capacity", "mentee_twice"]
        rules += ["timezone", "seniority", "department", "min_topic_fit"]
        counted = {rule: int(self.problems[rule]) for rule in rules}
        return {**counted, "total": sum(counted.values())}


def at(day: int) -> datetime:
    return START + timedelta(days=day)


# --- the matchers --------------------------------------------------------------------------------


class Matcher(Protocol):
    name: str
    config: ProgramConfig

    def choose(self, world: World, mentee: int) -> tuple[int, dict[str, float]] | None:
        """The mentor to propose (and each criterion's value, when scored), None: nobody."""
        ...


EXACT = Taxonomy([], "exact")  # knows no relation: normalised names only
BASELINE = ProgramConfig(rules=WITHOUT_TOPIC_RULE, taxonomy=EXACT)  # random and greedy: rules only


def eligible_rows(world: World, mentee: int, config: ProgramConfig) -> Ints:
    e = world.pop.mentees[mentee]
    values = criteria_values(world.pool, e, config)
    return np.flatnonzero(eligible(world.pool, e, config, values, world.excluded_ids(mentee)))


@dataclass
class RandomMatcher:
    """Any eligible mentor with a free place, at random (no topic requirement)."""

    rng: np.random.Generator
    name: str = "random"
    config: ProgramConfig = field(default_factory=lambda: BASELINE)

    def choose(self, world: World, mentee: int) -> tuple[int, dict[str, float]] | None:
        rows = eligible_rows(world, mentee, self.config)
        return (int(self.rng.choice(rows)), {}) if len(rows) else None


@dataclass
class GreedyExact:
    """The eligible mentor whose expertise names (normalised, no synonyms) cover most of the
    mentee's goals; ties at random."""

    rng: np.random.Generator
    covered: Ints  # mentees x mentors: goals covered by exact name
    name: str = "greedy_exact"
    config: ProgramConfig = field(default_factory=lambda: BASELINE)

    def choose(self, world: World, mentee: int) -> tuple[int, dict[str, float]] | None:
        rows = eligible_rows(world, mentee, self.config)
        if not len(rows):
            return None
        counts = self.covered[mentee, rows]
        best = rows[counts == counts.max()]
        return int(self.rng.choice(best)), {}


@dataclass
class Scored:
    """mentornet's own matcher (`rank`), under a program configuration; with learning on, it
    refits its weights on its own outcomes every REFIT_EVERY of them."""

    name: str
    config: ProgramConfig
    refit_every: int = 0  # 0: never learns
    fits: list[dict[str, Any]] = field(default_factory=list)
    next_fit: int = 0

    def choose(self, world: World, mentee: int) -> tuple[int, dict[str, float]] | None:
        e = world.pop.mentees[mentee]
        found = rank(world.pool, e, self.config, world.excluded_ids(mentee), limit=1)
        if not found:
            return None
        return world.pool.index[found[0].mentor.person_id], found[0].values

    def refit(self, world: World) -> None:
        """`learn` on every proposal whose fate is known, as the program's repository reads them."""
        if not self.refit_every or world.decided < self.next_fit:
            return
        self.next_fit = world.decided + self.refit_every
        outcomes = [
            Outcome(p.values, verdict)
            for p in world.proposals
            if (verdict := succeeded(p.status, p.end_reason, p.mentee_rating)) is not None
        ]
        learned = learn(outcomes, self.config)
        if learned is None:
            return
        self.config = self.config.with_learned(learned)
        truth = world.pop.truth.importance()
        rho = spearmanr([learned.learned[c] for c in CRITERIA], [truth[c] for c in CRITERIA])
        self.fits.append(
            {
                "outcomes": learned.outcomes,
                "in_force": learned.in_force,
                "spearman": round(float(rho.statistic), 4),
                "learned": learned.learned,
            }
        )


FIXED_WEIGHTS = {**DEFAULT_WEIGHTS, "mutual_learning": 0.0}
REFIT_EVERY = 250
LEARNING_MIN_OUTCOMES = 500


def matchers(pop: Population, seed: int) -> list[Matcher]:
    """The four matchers, each with its own random stream."""
    exact: dict[str, set[int]] = {}
    for j, m in enumerate(pop.mentors):
        for topic, _ in m.expertise:
            exact.setdefault(normalise_topic(topic), set()).add(j)
    covered = np.zeros((len(pop.mentees), len(pop.mentors)), dtype=np.int64)
    for i, e in enumerate(pop.mentees):
        for topic, _ in e.goals:
            covered[i, list(exact.get(normalise_topic(topic), ()))] += 1
    fixed = ProgramConfig(rules=WITHOUT_TOPIC_RULE, weights=FIXED_WEIGHTS, taxonomy=EXACT)
    new = ProgramConfig(rules=RULES, learning="on", learning_min_outcomes=LEARNING_MIN_OUTCOMES)
    return [
        RandomMatcher(np.random.default_rng([seed, 2, 0])),
        GreedyExact(np.random.default_rng([seed, 2, 1]), covered),
        Scored("fixed", fixed),
        Scored("new", new, refit_every=REFIT_EVERY),
    ]


# --- one matcher running the program -------------------------------------------------------------


@dataclass
class Proposal:
    number: int  # its place in World.proposals
    mentee: int
    mentor: int
    day: int
    values: dict[str, float]  # each criterion's value when proposed (scored matchers only)
    compatibility: float  # hidden, at an idle mentor: comparable with the best assignment
    utilities: tuple[float, float]  # hidden, the mentee's and the mentor's, when proposed
    status: str = "open"  # declined, expired, confirmed, completed, ended_early
    end_reason: str | None = None
    mentee_rating: int | None = None  # closing
    confirmed: int = -1  # the day both accepted


@dataclass
class Closing:
    """A closed relationship's closing feedback (None: that side did not answer)."""

    early: bool
    goal_reached: bool | None = None  # at least one goal reached at least partly
    mentee_rating: int | None = None
    mentor_rating: int | None = None
    learned: bool | None = None

    @property
    def both(self) -> bool:
        return self.mentee_rating is not None and self.mentor_rating is not None

    @property
    def win_win(self) -> bool:
        """As the report counts it (an unanswered side counts as not won)."""
        return both_won(
            bool(self.goal_reached),
            self.mentee_rating or 0,
            self.mentor_rating or 0,
            bool(self.learned),
        )


Event = tuple[str, int, int]  # (what happens, proposal number, a rating or a session count)


class World:
    """A matcher runs the program day by day: enrolments, proposals, answers, relationships,
    sessions, endings. Behaviour draws on random streams keyed by the pair, so a pair proposed
    by two matchers behaves alike in both (common random numbers)."""

    def __init__(self, pop: Population, matcher: Matcher, months: int, seed: int) -> None:
        self.pop, self.matcher, self.seed = pop, matcher, seed
        self.arrival_days = months * 30
        n, m = len(pop.mentees), len(pop.mentors)
        self.places = np.array([x.capacity for x in pop.mentors], dtype=np.int64)
        self.capacity = self.places.copy()  # lowered when a mentor steps back for lack of time
        self.held = np.zeros(m, dtype=np.int64)  # open proposals and relationships
        self.rating_sum = np.array([x.rating_sum for x in pop.mentors], dtype=float)
        self.rating_count = np.array([x.rating_count for x in pop.mentors], dtype=float)
        self.excluded: list[set[int]] = [set() for _ in range(n)]  # pairs proposed before
        self.waiting: dict[int, int] = {}  # mentee -> since when they have had no proposal
        self.gave_up = 0
        self.matched_day = np.full(n, -1)
        self.proposals: list[Proposal] = []
        self.closings: list[Closing] = []
        self.events: dict[int, list[Event]] = {}
        self.decided = 0  # proposals answered, declined or expired: outcomes for learning
        self.load_share: list[Floats] = []
        self.days = 0
        self.day = 0  # today
        self.checker = Checker(pop, matcher.config.rules, matcher.config.taxonomy)
        self.pool = self.build_pool(0)
        self.offsets = self.zone_offsets(0)
        self.maybe = self.prefilter()

    # -- the matcher's view -----------------------------------------------------------------------

    def build_pool(self, day: int) -> MentorPool:
        """The pool as matching would read it on `day`: loads, capacities and ratings so far."""
        mentors = [
            replace(
                x,
                load=int(self.held[j]),
                capacity=int(self.capacity[j]),
                rating_sum=int(self.rating_sum[j]),
                rating_count=int(self.rating_count[j]),
            )
            for j, x in enumerate(self.pop.mentors)
        ]
        return MentorPool(mentors, at(day))

    def zone_offsets(self, day: int) -> dict[str, float]:
        zones = {x.timezone for x in self.pop.mentors} | {x.timezone for x in self.pop.mentees}
        return {z: offset_hours(z, at(day)) for z in sorted(zones)}

    def prefilter(self) -> Bools:
        """Mentees x mentors that may ever be eligible (the rules, with an hour and a half more
        time-zone slack for summer time): the waitlist asks the matcher only when one of them
        has a free place, as matching does when a place frees."""
        config = self.matcher.config
        limit = config.rules.max_timezone_difference_hours
        slack = config.rules.model_copy(
            update={"max_timezone_difference_hours": None if limit is None else limit + 1.5}
        )
        relaxed = replace(config, rules=slack)
        ok = np.zeros((len(self.pop.mentees), len(self.pop.mentors)), dtype=bool)
        for i, e in enumerate(self.pop.mentees):
            ok[i] = eligible(self.pool, e, relaxed, criteria_values(self.pool, e, relaxed))
        return ok

    def excluded_ids(self, mentee: int) -> list[str]:
        return [self.pop.mentors[j].person_id for j in self.excluded[mentee]]

    # -- the program, day by day ------------------------------------------------------------------

    def rng(self, purpose: int, proposal: Proposal) -> np.random.Generator:
        return np.random.default_rng([self.seed, purpose, proposal.mentee, proposal.mentor])

    def run(self) -> World:
        """Enrolments over the arrival months, then on until every relationship has closed and
        nobody waits any more."""
        arrivals: dict[int, list[int]] = {}
        for i, day in enumerate(self.pop.arrival):
            arrivals.setdefault(int(day), []).append(i)
        day = 0
        while day < self.arrival_days or self.events or self.waiting:
            offsets = self.zone_offsets(day)
            if day % 7 == 0 or offsets != self.offsets:  # weekly, and when summer time moves
                self.pool, self.offsets = self.build_pool(day), offsets
            if day % 7 == 0 and day < self.arrival_days:
                self.load_share.append(self.held / self.places)
            self.day = day
            for kind, number, extra in self.events.pop(day, []):
                getattr(self, f"on_{kind}")(self.proposals[number], day, extra)
            for i in arrivals.get(day, []):
                self.waiting[i] = day
            for i in [i for i, since in self.waiting.items() if day - since >= GIVE_UP_DAYS]:
                del self.waiting[i]
                self.gave_up += 1
            if isinstance(self.matcher, Scored):
                self.matcher.refit(self)
            self.serve(day)
            day += 1
            if day % 90 == 0:
                say(f"  {self.matcher.name}: day {day}, {len(self.proposals)} proposals")
        self.days = day
        return self

    def serve(self, day: int) -> None:
        """The waitlist, earliest enrolled first (a mentee keeps their place after a decline)."""
        free = self.held < self.capacity
        for i in sorted(self.waiting, key=lambda i: (self.pop.arrival[i], i)):
            options = np.flatnonzero(self.maybe[i] & free)
            if not len(options) or self.excluded[i].issuperset(options.tolist()):
                continue
            chosen = self.matcher.choose(self, i)
            if chosen is not None:
                self.propose(i, *chosen, day)
                free = self.held < self.capacity

    def propose(self, mentee: int, mentor: int, values: dict[str, float], day: int) -> None:
        """The proposal, checked; both people's answers are drawn now from their utilities."""
        truth = self.pop.truth
        self.checker.proposed(mentee, mentor, day)
        utilities = truth.utilities(mentee, mentor, self.held[mentor] / self.capacity[mentor])
        compatibility = truth.compatibility_of(mentee, mentor)
        number = len(self.proposals)
        proposal = Proposal(number, mentee, mentor, day, values, compatibility, utilities)
        self.proposals.append(proposal)
        self.excluded[mentee].add(mentor)
        del self.waiting[mentee]
        self.held[mentor] += 1
        self.pool.take_slot(self.pop.mentors[mentor].person_id)
        rng = self.rng(1, proposal)
        answers: list[tuple[bool | None, int]] = []  # (accepted, after days); None: no answer
        for utility in utilities:
            if rng.random() < NO_ANSWER:
                answers.append((None, RESPONSE_DAYS))
            else:
                yes = bool(rng.random() < sigmoid(ACCEPT_SLOPE * (utility - ACCEPT_MIDPOINT)))
                answers.append((yes, min(int(rng.geometric(0.5)), RESPONSE_DAYS)))
        declines = [after for yes, after in answers if yes is False]
        if declines:
            self.schedule(day + min(declines), "declined", proposal)
        elif all(yes for yes, _ in answers):
            self.schedule(day + max(after for _, after in answers), "confirmed", proposal)
        else:
            self.schedule(day + RESPONSE_DAYS, "expired", proposal)

    def schedule(self, day: int, kind: str, proposal: Proposal, extra: int = 0) -> None:
        assert day > self.day, "events happen on a later day than the one that plans them"
        self.events.setdefault(day, []).append((kind, proposal.number, extra))

    def release(self, proposal: Proposal) -> None:
        self.held[proposal.mentor] -= 1
        self.pool.free_slot(self.pop.mentors[proposal.mentor].person_id)
        self.checker.released(proposal.mentee, proposal.mentor)

    def on_declined(self, proposal: Proposal, day: int, _: int) -> None:
        self.unanswered(proposal, "declined")

    def on_expired(self, proposal: Proposal, day: int, _: int) -> None:
        self.unanswered(proposal, "expired")

    def unanswered(self, proposal: Proposal, status: str) -> None:
        """The place is free again; the mentee waits again, keeping their place in the waitlist
        (earliest enrolled first), without a proposal since this one."""
        proposal.status = status
        self.decided += 1
        self.release(proposal)
        self.waiting[proposal.mentee] = proposal.day

    def on_confirmed(self, proposal: Proposal, day: int, _: int) -> None:
        """The relationship's course is drawn now: its length (an early end's hazard falls with
        compatibility), and its sessions (more for a better pair), some rated."""
        proposal.status, proposal.confirmed = "confirmed", day
        self.decided += 1
        if self.matched_day[proposal.mentee] < 0:
            self.matched_day[proposal.mentee] = day
        rng = self.rng(2, proposal)
        c = sum(proposal.utilities) / 2
        rate = EARLY_END_RATE * math.exp(-EARLY_END_SLOPE * (c - EARLY_END_MIDPOINT))
        length = min(
            max(1, math.ceil(rng.exponential(RELATIONSHIP_DAYS / rate))), RELATIONSHIP_DAYS
        )
        base, slope = SESSIONS_PER_MONTH
        count = rng.poisson((base + slope * c) * length / 30)
        quality = self.pop.truth.quality[proposal.mentor]
        for session in np.sort(rng.integers(day + 1, day + length + 1, count)):
            if rng.random() < SESSION_RATED:
                rating = session_rating(rng, quality, proposal.utilities[0])
                self.schedule(int(session), "session", proposal, rating)
        self.schedule(day + length, "end", proposal, count)

    def on_session(self, proposal: Proposal, day: int, rating: int) -> None:
        self.rate(proposal.mentor, rating)

    def rate(self, mentor: int, rating: int) -> None:
        """A mentee's rating counts in the mentor's reputation at once."""
        self.rating_sum[mentor] += rating
        self.rating_count[mentor] += 1
        self.pool.reputation[mentor] = reputation(
            self.rating_sum[mentor : mentor + 1], self.rating_count[mentor : mentor + 1]
        )[0]

    def on_end(self, proposal: Proposal, day: int, sessions: int) -> None:
        """Completion or an early ending (why, and by whom), then both closing feedbacks."""
        truth, rng = self.pop.truth, self.rng(3, proposal)
        i, j = proposal.mentee, proposal.mentor
        early = day - proposal.confirmed < RELATIONSHIP_DAYS
        c = sum(proposal.utilities) / 2
        reason = None
        if early:
            misfit = rng.random() < sigmoid(NOT_A_FIT_SLOPE * (0.5 - c))
            reason = "not_a_fit" if misfit else "no_time"
        mentor_busy = reason == "no_time" and rng.random() < 1 - truth.spare_time[j]
        proposal.status = "ended_early" if early else "completed"
        proposal.end_reason = reason
        self.release(proposal)
        if mentor_busy:  # the mentor steps back from one place
            self.capacity[j] -= 1
            self.pool.change_capacity(self.pop.mentors[j].person_id, -1)
            self.checker.capacity_lowered(j)
        if reason == "not_a_fit" or mentor_busy:
            self.waiting[i] = day  # matched again at once, never with the same mentor

        closing = Closing(early)
        engagement = 0.4 + 0.6 * min(1.0, sessions / 6)
        penalty = 0.8 if reason == "not_a_fit" else 0.0
        if rng.random() < CLOSING_ANSWERED["mentee"][early]:
            help_ = truth.goal_help[i][:, j]
            reached = rng.random(len(help_)) < np.clip(0.05 + 0.9 * help_ * engagement, 0, 0.95)
            latent = RATING_BASE + 4 * (
                0.5 * proposal.utilities[0] + 0.25 * truth.quality[j] + 0.25 * reached.mean()
            )
            rating = int(np.clip(round(latent - penalty + rng.normal(0, 0.6)), 1, 5))
            closing.goal_reached, closing.mentee_rating = bool(reached.any()), rating
            proposal.mentee_rating = rating
            self.rate(j, rating)
        if rng.random() < CLOSING_ANSWERED["mentor"][early]:
            latent = RATING_BASE + 4 * (0.7 * proposal.utilities[1] + 0.3 * engagement)
            closing.mentor_rating = int(np.clip(round(latent - penalty + rng.normal(0, 0.6)), 1, 5))
            closing.learned = bool(rng.random() < truth.learns[i, j] * min(1.0, sessions / 3))
        self.closings.append(closing)


# --- the best possible assignment ----------------------------------------------------------------


def allowed_pairs(pop: Population, rules: ProgramRules) -> Bools:
    """Mentees x mentors the hard rules allow on day 0 (language, self, manager, program rules
    but the topic rule), computed from the records, as the checker reads them."""
    bits = {code: 1 << k for k, code in enumerate(LANGUAGES)}
    spoken = [np.array([sum(bits[c] for c in x.languages) for x in side]) for side in
              (pop.mentees, pop.mentors)]  # fmt: skip
    ok = np.bitwise_and.outer(spoken[0], spoken[1]) > 0
    ids = np.array([m.person_id for m in pop.mentors])
    ok &= np.array([e.person_id for e in pop.mentees])[:, None] != ids[None, :]
    ok &= np.array([e.manager_id or "" for e in pop.mentees])[:, None] != ids[None, :]
    if rules.max_timezone_difference_hours is not None:
        offsets = [np.array([offset_hours(x.timezone, START) for x in side]) for side in
                   (pop.mentees, pop.mentors)]  # fmt: skip
        gap = np.abs(np.subtract.outer(offsets[0], offsets[1])) % 24
        ok &= np.minimum(gap, 24 - gap) <= rules.max_timezone_difference_hours
    if rules.min_seniority_gap is not None:
        levels = [np.array([np.nan if x.seniority is None else x.seniority for x in side])
                  for side in (pop.mentees, pop.mentors)]  # fmt: skip
        gap = np.subtract.outer(levels[1], levels[0]).T
        ok &= np.isnan(gap) | (gap >= rules.min_seniority_gap)
    return ok


def best_assignment(pop: Population, months: int) -> dict[str, Any]:
    """The assignment of the same mentees with the most total hidden compatibility: each mentor
    place serves one mentee per relationship length the program runs (arrivals, then one last
    relationship), under the hard rules but the topic rule (scipy's linear_sum_assignment on
    mentor places)."""
    turns = math.ceil((months * 30 + RELATIONSHIP_DAYS) / RELATIONSHIP_DAYS)
    compatibility = pop.truth.compatibility()
    ok = allowed_pairs(pop, WITHOUT_TOPIC_RULE)
    places = np.repeat(np.arange(len(pop.mentors)), [m.capacity * turns for m in pop.mentors])
    rows, cols = linear_sum_assignment(np.where(ok, compatibility, -1.0)[:, places], maximize=True)
    mentors = places[cols]
    kept = ok[rows, mentors]
    return {
        "turns_per_place": turns,
        "matched": int(kept.sum()),
        "mean_compatibility": round(float(compatibility[rows[kept], mentors[kept]].mean()), 4),
        "mean_compatibility_random_allowed_pair": round(float(compatibility[ok].mean()), 4),
    }


# --- the figures ---------------------------------------------------------------------------------


def rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def figures(world: World, best: float) -> dict[str, Any]:
    proposals = world.proposals
    status = Counter(p.status for p in proposals)
    answered = status["confirmed"] + status["completed"] + status["ended_early"]
    decided = answered + status["declined"] + status["expired"]
    closed = status["completed"] + status["ended_early"]
    reasons = Counter(p.end_reason for p in proposals if p.status == "ended_early")
    both = [c for c in world.closings if c.both]
    relationships = [p for p in proposals if p.confirmed >= 0]
    waited = (world.matched_day - world.pop.arrival)[world.matched_day >= 0]
    compatibility = np.mean([p.compatibility for p in proposals]) if proposals else float("nan")
    return {
        "proposals": len(proposals),
        "acceptance_rate": rate(answered, decided),
        "declined": status["declined"],
        "expired": status["expired"],
        "relationships": len(relationships),
        "early_end_rate": rate(status["ended_early"], closed),
        "early_end_reasons": dict(sorted((str(k), v) for k, v in reasons.items())),
        "win_win_rate": rate(sum(c.win_win for c in both), len(both)),
        "mean_closing_rating": {
            side: round(float(np.mean(ratings)), 3) if ratings else None
            for side, ratings in (
                ("mentee", [c.mentee_rating for c in world.closings if c.mentee_rating]),
                ("mentor", [c.mentor_rating for c in world.closings if c.mentor_rating]),
            )
        },
        "goal_reached_share": rate(
            sum(bool(c.goal_reached) for c in world.closings),
            sum(c.goal_reached is not None for c in world.closings),
        ),
        "mentor_learned_share": rate(
            sum(bool(c.learned) for c in world.closings),
            sum(c.learned is not None for c in world.closings),
        ),
        "closed_with_both_feedbacks": len(both),
        "mean_compatibility": round(float(compatibility), 4),
        "mean_compatibility_of_relationships": round(
            float(np.mean([p.compatibility for p in relationships])), 4
        ),
        "compatibility_vs_best": round(float(compatibility) / best, 4),
        "time_to_match_days": {
            "median": float(np.median(waited)) if len(waited) else None,
            "p90": float(np.percentile(waited, 90)) if len(waited) else None,
        },
        "mentees_matched_share": rate(int((world.matched_day >= 0).sum()), len(world.pop.mentees)),
        "mentees_gave_up": world.gave_up,
        "mentor_load_gini": round(gini(np.mean(world.load_share, axis=0).tolist()) or 0.0, 4),
        "violations": world.checker.report(),
        "days_simulated": world.days,
    }


def observability(world: World) -> dict[str, float | None]:
    """How well each criterion's value, as the new matcher sees it at the end of its run (all
    ratings in), follows its hidden counterpart: Spearman over the allowed pairs of some mentees.
    Load is left out: every place is free again by then, and its truth is partly the mentor's
    spare time, which nothing shows."""
    truth, config = world.pop.truth, world.matcher.config
    seen = np.zeros((len(CRITERIA), len(truth.sample), len(world.pop.mentors)))
    allowed = np.zeros(seen.shape[1:], dtype=bool)
    for row, i in enumerate(truth.sample):
        values = criteria_values(world.pool, world.pop.mentees[i], config)
        allowed[row] = eligible(world.pool, world.pop.mentees[i], config, values)
        for k, criterion in enumerate(CRITERIA):
            seen[k, row] = values.of(criterion)
    result: dict[str, float | None] = {}
    for k, criterion in enumerate(CRITERIA):
        if criterion == "load":
            result[criterion] = None
            continue
        rho = spearmanr(seen[k][allowed], truth.sampled[k][allowed]).statistic
        result[criterion] = None if math.isnan(rho) else round(float(rho), 4)
    return result


def learning_figures(matcher: Scored) -> dict[str, Any]:
    """The new matcher's last fit: its unbounded learned weights against the hidden importance."""
    if not matcher.fits:
        return {"outcomes": 0, "spearman": None}
    last = matcher.fits[-1]
    return {
        "outcomes": last["outcomes"],
        "spearman": last["spearman"],
        "learned": last["learned"],
        "refit_every": REFIT_EVERY,
        "learning_min_outcomes": LEARNING_MIN_OUTCOMES,
        "history": [[fit["outcomes"], fit["spearman"]] for fit in matcher.fits],
    }


def run(mentors: int, mentees: int, months: int, seed: int) -> dict[str, Any]:
    """The whole benchmark on one population: every matcher, the best assignment, the figures."""
    started = time.perf_counter()
    say(f"population: {mentors} mentors, {mentees} mentees over {months} months, seed {seed}")
    pop = population(mentors, mentees, months, seed)
    best = best_assignment(pop, months)
    say(f"best assignment: {best}")
    results: dict[str, dict[str, Any]] = {}
    learned: dict[str, Any] = {}
    for matcher in matchers(pop, seed):
        say(f"{matcher.name}: running")
        world = World(pop, matcher, months, seed).run()
        results[matcher.name] = figures(world, best["mean_compatibility"])
        if isinstance(matcher, Scored) and matcher.refit_every:
            learned = {**learning_figures(matcher), "observability": observability(world)}
    win_win = {name: r["win_win_rate"] or 0.0 for name, r in results.items()}
    new = results["new"]
    others = [results[name] for name in ("random", "fixed")]
    over_fixed = round(win_win["new"] / win_win["fixed"], 4) if win_win["fixed"] else None
    over_random = round(win_win["new"] / win_win["random"], 4) if win_win["random"] else None
    return {
        "sizes": {"mentors": mentors, "mentees": mentees, "months_of_arrivals": months},
        "seed": seed,
        "population": pop.facts,
        "hidden_importance": pop.truth.importance(),
        "best_assignment": best,
        "matchers": results,
        "learning": learned,
        "win_win_over_fixed": over_fixed,
        "win_win_over_random": over_random,
        "targets": {
            "win_win_over_fixed_at_least_1.15": over_fixed is not None and over_fixed >= 1.15,
            "win_win_over_random_at_least_1.5": over_random is not None and over_random >= 1.5,
            "acceptance_better_than_fixed_and_random": all(
                (new["acceptance_rate"] or 0) > (r["acceptance_rate"] or 0) for r in others
            ),
            "early_end_lower_than_fixed_and_random": all(
                (new["early_end_rate"] or 1) < (r["early_end_rate"] or 1) for r in others
            ),
            "spearman_at_least_0.8_after_2000_outcomes": bool(
                learned.get("outcomes", 0) >= 2000 and (learned.get("spearman") or 0) >= 0.8
            ),
            "no_violations": all(r["violations"]["total"] == 0 for r in results.values()),
        },
        "seconds": round(time.perf_counter() - started, 1),
    }


DEFINITIONS = {
    "acceptance_rate": "proposals both accepted / proposals answered or expired",
    "early_end_rate": "relationships ended before their length / relationships closed",
    "win_win_rate": "win/wins / closed relationships with both closing feedbacks (analytics-guide)",
    "mean_compatibility": "hidden compatibility (mean of both sides' utilities, idle mentor) of"
    " every proposal",
    "compatibility_vs_best": "mean_compatibility / the best assignment's mean compatibility",
    "time_to_match_days": "enrolment to the first confirmed relationship, matched mentees only",
    "mentees_matched_share": "mentees who had a confirmed relationship / all mentees",
    "mentor_load_gini": "Gini of each mentor's mean (open proposals + relationships) / places,"
    " sampled weekly over the arrival months",
    "violations": "hard rules broken, each proposal checked from the records alone: must be 0",
    "learning": "the new matcher's last fit: `learned` (before bounds) against hidden_importance,"
    " Spearman over the 8 criteria",
}


def main() -> None:
    args = arguments(
        __doc__ or "match quality benchmark",
        [
            ("--seed", {"type": int, "default": 7, "help": "the population and behaviour"}),
            ("--mentors", {"type": int, "default": None}),
            ("--mentees", {"type": int, "default": None}),
            ("--months", {"type": int, "default": None, "help": "months of enrolments"}),
        ],
    )
    mentors, mentees, months = SIZES["quick" if args.quick else "full"]
    result = run(args.mentors or mentors, args.mentees or mentees, args.months or months, args.seed)
    emit({"benchmark": "match_quality", "quick": args.quick, "machine": machine(),
          "definitions": DEFINITIONS, **result})  # fmt: skip


if __name__ == "__main__":
    main()
