"""matching: how fast and how well mentees are matched with mentors.

    python -m benchmarks.matching [--quick]

Sections of the report (one JSON object, last line), each under `sections`:
  cohort  100,000 mentees x 20,000 mentors (quick: 5,000 x 1,000) assigned at once by the
          candidate-list min-cost flow, against the greedy and deferred-acceptance baselines on
          the same instance ("scale"); then all three against the exact optimum, a min-cost flow
          over every eligible pair built from `criteria_values` and `eligible` mentee by mentee, on
          10,000 x 2,000 (quick: 2,000 x 400, "quality") and on 4,000 x 2,000 (quick: 800 x 400,
          "quality_roomy": more places than mentees). Capacities 1-5 give about 0.55 places per
          mentee in the first two. Blocking pairs of the flow's and deferred acceptance's
          assignments are counted exactly, for every mentee or (at scale) a seeded sample.
Goals, expertise, offers and learning interests are names of the shipped taxonomy; some goals are
nobody's expertise and are covered only through related, broader or narrower topics, and the
program keeps the default `min_topic_fit`.
Every assignment is checked by `check`, which reads the Mentor and Mentee records directly and
shares no code with the matcher (the topic fit rule reads the taxonomy's credits).
"""

from __future__ import annotations

import os

# Before numpy loads: the candidate search spreads blocks over the cores itself (see candidates.py).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import random
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import numpy as np
import ortools

from benchmarks._common import arguments, emit, machine, peak_rss_mb
from services.matching.cpus import usable_cpus
from services.matching.domain.candidates import BatchScorer
from services.matching.domain.cohort import (
    DEFERRED_K,
    PER_MENTOR,
    DeferredStats,
    SolveStats,
    assign_greedy,
    blocking_pairs,
    commit,
    deferred_acceptance,
    min_cost_assignment,
    solve,
)
from services.matching.domain.config import ProgramConfig
from services.matching.domain.criteria import Ints, utc_offset_hours
from services.matching.domain.default_topics import DEFAULT_TOPICS
from services.matching.domain.scoring import (
    Candidate,
    Mentee,
    Mentor,
    MentorPool,
    criteria_values,
    eligible,
    rank,
)
from shared.contract.events import ProgramRules

NOW = datetime(2026, 3, 2, 9, tzinfo=UTC)
# goals, most popular first; the first ONLY_RELATED of these below are nobody's expertise
GOALS = [
    "leadership",
    "public speaking",
    "python",
    "management",
    "machine learning",
    "career development",
    "storytelling",
    "product management",
    "negotiation",
    "data analytics",
    "first-time management",
    "strategy",
    "cloud",
    "django",
    "feedback",
    "project management",
    "sales",
    "deep learning",
    "javascript",
    "time management",
    "coaching",
    "writing",
    "data visualisation",
    "kubernetes",
    "confidence",
    "career change",
    "java",
    "kotlin",
    "user experience",
    "marketing",
    "presentation design",
    "react",
    "sql",
    "stress management",
    "finance",
    "agile",
]
ONLY_RELATED = {
    "storytelling",  # related: public speaking, writing
    "first-time management",  # broader: management
    "django",  # broader: python
    "deep learning",  # broader: machine learning
    "data visualisation",  # broader: data analytics
    "career change",  # broader: career development
    "kotlin",  # related: java
    "presentation design",  # related: public speaking
}
# mentors' expertise: the goals but those, and broader topics
EXPERTISE = [g for g in GOALS if g not in ONLY_RELATED] + [
    "communication",
    "software engineering",
    "data science",
    "human resources",
]
OFFERS = [  # what mentees can share, newest skills first
    "generative ai",
    "react",
    "typescript",
    "data analytics",
    "digital marketing",
    "diversity and inclusion",
    "design thinking",
    "kubernetes",
]
INTERESTS = [  # what mentors would like to learn
    "artificial intelligence",
    "generative ai",
    "javascript",
    "data science",
    "marketing",
    "diversity and inclusion",
    "innovation",
    "cloud",
]
FRENCH = {row[0]: row[1] for row in DEFAULT_TOPICS}  # some people type the French name
LANGUAGES = (["en", "fr", "de", "es", "pt"], [0.80, 0.07, 0.06, 0.05, 0.02])
ZONES = (
    [
        "America/Los_Angeles",
        "America/New_York",
        "America/Sao_Paulo",
        "Europe/London",
        "Europe/Paris",
        "Asia/Kolkata",
        "Asia/Singapore",
        "Asia/Tokyo",
    ],
    [0.12, 0.20, 0.06, 0.14, 0.22, 0.12, 0.08, 0.06],
)
DEPARTMENTS = [f"department {i}" for i in range(12)]
RULES = ProgramRules(max_timezone_difference_hours=8, department="any", min_seniority_gap=1)
UNASSIGNED_CHECKED = 1000  # unassigned mentees checked, at most, for an eligible mentor still free
BLOCKING_SCORED = 40_000_000  # pairs scored to count blocking pairs: a sample of mentees above

Pairs = list[tuple[Mentee, Candidate]]


# --- instances -------------------------------------------------------------------------------


def instance(
    mentees: int, mentors: int, seed: int
) -> tuple[MentorPool, list[Mentee], dict[str, set[str]]]:
    """A program: ~40 topics of the taxonomy with skewed popularity (8 goals covered only through
    related topics, a tenth typed in French), 5 languages, 8 time zones, 12 departments,
    capacities 1-5, some mentors with load or ratings, some mentees reporting to a mentor,
    some mentees who are mentors themselves, some past refusals, a third of the mentees offering
    what a quarter of the mentors would like to learn."""
    rng = random.Random(seed)

    def skewed(names: list[str]) -> list[float]:
        return [1 / (i + 1) ** 0.7 for i in range(len(names))]

    def speaks() -> tuple[str, ...]:
        spoken = {rng.choices(*LANGUAGES)[0] for _ in range(rng.choice((1, 1, 2, 3)))}
        return tuple(sorted(spoken))

    def topics(names: list[str], count: int) -> list[str]:
        return list(dict.fromkeys(rng.choices(names, skewed(names), k=count)))

    def typed(topic: str) -> str:
        return FRENCH[topic] if rng.random() < 0.1 else topic

    mentor_list = []
    for j in range(mentors):
        ratings = rng.choice((0, 0, rng.randint(1, 30)))
        mentor_list.append(
            Mentor(
                person_id=f"p{j:07d}",
                languages=speaks(),
                timezone=rng.choices(*ZONES)[0],
                department=None if rng.random() < 0.05 else rng.choice(DEPARTMENTS),
                seniority=None if rng.random() < 0.05 else rng.randint(3, 10),
                expertise=tuple(
                    (typed(t), rng.randint(2, 5)) for t in topics(EXPERTISE, rng.randint(2, 5))
                ),
                capacity=rng.randint(1, 5),
                load=rng.choice((0, 0, 0, 1)),
                rating_sum=round(ratings * rng.uniform(3.0, 5.0)),
                rating_count=ratings,
                learning_interests=tuple(
                    topics(INTERESTS, rng.randint(1, 3)) if rng.random() < 0.25 else ()
                ),
            )
        )
    pool = MentorPool(mentor_list, NOW)
    mentee_list, excluded = [], {}
    for i in range(mentees):
        is_mentor = rng.random() < 0.02
        person_id = f"p{rng.randrange(mentors):07d}" if is_mentor else f"q{i:07d}"
        manager = f"p{rng.randrange(mentors):07d}" if rng.random() < 0.10 else None
        goals = topics(GOALS, rng.randint(1, 3))
        offers = topics(OFFERS, rng.randint(1, 2)) if rng.random() < 0.3 else []
        mentee_list.append(
            Mentee(
                person_id=person_id,
                languages=speaks(),
                timezone=rng.choices(*ZONES)[0],
                department=None if rng.random() < 0.05 else rng.choice(DEPARTMENTS),
                seniority=None if rng.random() < 0.05 else rng.randint(1, 6),
                manager_id=manager,
                goals=tuple((typed(t), p + 1) for p, t in enumerate(goals)),
                offers=tuple(offers),
            )
        )
        if rng.random() < 0.05:
            excluded[person_id] = {f"p{rng.randrange(mentors):07d}" for _ in range(2)}
    return pool, mentee_list, excluded


# --- independent checks ----------------------------------------------------------------------


def check(
    pool: MentorPool,
    initial_load: Mapping[str, int],
    pairs: Pairs,
    config: ProgramConfig,
    excluded: Mapping[str, set[str]],
) -> dict[str, int]:
    """Broken rules among the pairs, counted straight from the records (no matcher code)."""
    rules, problems = config.rules, Counter[str]()
    taken = Counter(c.mentor.person_id for _, c in pairs)
    offsets: dict[str, float] = {}
    credits: dict[tuple[str, str], float] = {}

    def offset(zone: str) -> float:
        return offsets.setdefault(zone, utc_offset_hours(zone, NOW))

    def topic_fit(mentee: Mentee, mentor: Mentor) -> float:
        """Goal weight (4 - priority) times the best level / 5 x credit, over the weights."""
        weights = [4 - priority for _, priority in mentee.goals]
        covered = []
        for goal, _ in mentee.goals:
            for topic, _ in mentor.expertise:
                if (goal, topic) not in credits:
                    credits[goal, topic] = config.taxonomy.credit(goal, topic)
            best = (credits[goal, t] * level / 5 for t, level in mentor.expertise)
            covered.append(max(best, default=0.0))
        return sum(w * c for w, c in zip(weights, covered, strict=True)) / (sum(weights) or 1)

    for mentee, candidate in pairs:
        mentor = candidate.mentor
        problems["language"] += not set(mentee.languages) & set(mentor.languages)
        problems["self"] += mentee.person_id == mentor.person_id
        problems["manager"] += mentee.manager_id == mentor.person_id
        problems["excluded"] += mentor.person_id in excluded.get(mentee.person_id, ())
        gap = abs(offset(mentor.timezone) - offset(mentee.timezone))
        limit = rules.max_timezone_difference_hours
        problems["timezone"] += limit is not None and min(gap, 24 - gap) > limit
        same = mentor.department == mentee.department
        problems["department"] += (rules.department == "same" and not same) or (
            rules.department == "cross" and same
        )
        known = mentor.seniority is not None and mentee.seniority is not None
        problems["seniority"] += bool(
            known
            and rules.min_seniority_gap is not None
            and mentor.seniority - mentee.seniority < rules.min_seniority_gap  # type: ignore[operator]
        )
        if rules.min_topic_fit > 0:
            fit = topic_fit(mentee, mentor)
            problems["topic_fit"] += not (fit > 0 and fit >= rules.min_topic_fit - 1e-12)
    problems["capacity"] = sum(
        taken[m.person_id] > m.capacity - initial_load[m.person_id] for m in pool.mentors
    )
    problems["mentee_twice"] = sum(
        n > 1 for n in Counter(id(mentee) for mentee, _ in pairs).values()
    )
    return {rule: int(problems[rule]) for rule in sorted(problems)}


def free_eligible_left(
    pool: MentorPool,
    mentees: Sequence[Mentee],
    pairs: Pairs,
    config: ProgramConfig,
    excluded: Mapping[str, set[str]],
    limit: int,
) -> dict[str, int]:
    """Unassigned mentees (up to `limit`, evenly spread) with an eligible mentor still free, by `rank`.

    The pool's loads already hold the assignments, so `rank` sees only the places left.
    """
    assigned = {id(mentee) for mentee, _ in pairs}
    waiting = [m for m in mentees if id(m) not in assigned]
    sample = waiting[:: max(1, len(waiting) // limit)][:limit]
    found = sum(bool(rank(pool, m, config, excluded.get(m.person_id, ()), limit=1)) for m in sample)
    return {"unassigned": len(waiting), "checked": len(sample), "found": found}


def gini(values: np.ndarray) -> float:
    """0 when every mentor is equally used, towards 1 when a few carry everything."""
    values = np.sort(values)
    if not len(values) or not values.sum():
        return 0.0
    ranks = np.arange(1, len(values) + 1)
    return float((2 * ranks - len(values) - 1) @ values / (len(values) * values.sum()))


def summary(pairs: Pairs, pool: MentorPool) -> dict[str, Any]:
    total = sum(c.score for _, c in pairs)
    used = pool.capacity > 0
    return {
        "matched": len(pairs),
        "total_score": round(total, 4),
        "mean_score": round(total / max(len(pairs), 1), 4),
        "load_gini": round(gini(pool.load[used] / pool.capacity[used]), 4),
    }


# --- the exact optimum -----------------------------------------------------------------------


def optimum(
    pool: MentorPool,
    mentees: Sequence[Mentee],
    config: ProgramConfig,
    excluded: Mapping[str, set[str]],
) -> dict[str, Any]:
    """The best total score: a min-cost flow over every eligible pair (reference scoring)."""
    weights, seconds = config.normalised_weights(), dict[str, float]()
    rows, mentors, scores = [], [], []
    with timed(seconds, "graph"):
        for i, mentee in enumerate(mentees):
            values = criteria_values(pool, mentee, config)
            ok = eligible(pool, mentee, config, values, excluded.get(mentee.person_id, ()))
            score = values.score(weights)
            cols = np.flatnonzero(ok)
            rows.append(np.full(len(cols), i))
            mentors.append(cols)
            scores.append(score[cols])
    tails, heads, gains = np.concatenate(rows), np.concatenate(mentors), np.concatenate(scores)
    with timed(seconds, "solve"):
        chosen = min_cost_assignment(tails, heads, gains, len(mentees), pool.capacity - pool.load)
    total = sum(
        float(scores[i][np.searchsorted(mentors[i], chosen[i])])
        for i in np.flatnonzero(chosen >= 0)
    )
    return {
        "eligible_pairs": len(tails),
        "seconds": seconds,
        "matched": int((chosen >= 0).sum()),
        "total_score": round(total, 4),
    }


# --- the cohort section ----------------------------------------------------------------------


def run_flow(
    pool: MentorPool,
    mentees: Sequence[Mentee],
    config: ProgramConfig,
    excluded: Mapping[str, set[str]],
    k: int | None = None,
) -> tuple[Pairs, dict[str, Any], BatchScorer, Ints]:
    """`cohort.assign`, step by step so each step is timed; its scorer and choices too."""
    seconds: dict[str, float] = {}
    stats = SolveStats()
    started, cpu = time.perf_counter(), time.process_time()
    with timed(seconds, "prepare"):
        scorer = BatchScorer(pool, mentees, config, excluded, usable_cpus())
    with timed(seconds, "solve_total"):
        chosen = solve(scorer, k, stats)
    with timed(seconds, "commit"):
        pairs = commit(pool, scorer, chosen)
    seconds["total"] = round(time.perf_counter() - started, 3)
    seconds["cpu_total"] = round(time.process_time() - cpu, 3)  # all threads of this process
    seconds["candidates"] = round(seconds["prepare"] + stats.candidate_seconds, 3)
    seconds["flow"] = round(stats.flow_seconds, 3)
    seconds["greedy_leftovers"] = round(stats.greedy_seconds, 3)
    report = {
        "seconds": seconds,
        "k": stats.k,
        "per_mentor": PER_MENTOR,
        "rounds": stats.rounds,
        "arcs": stats.arcs,
        "eligible_mentees": stats.eligible_mentees,
        "placed_by_greedy_leftovers": stats.greedy_placed,
    }
    return pairs, report, scorer, chosen


def run_deferred_acceptance(
    pool: MentorPool,
    mentees: Sequence[Mentee],
    config: ProgramConfig,
    excluded: Mapping[str, set[str]],
) -> tuple[Pairs, dict[str, Any], Ints]:
    """`cohort.assign_deferred_acceptance`, timed, with its choices."""
    seconds: dict[str, float] = {}
    stats = DeferredStats()
    with timed(seconds, "total"):
        scorer = BatchScorer(pool, mentees, config, excluded, usable_cpus())
        chosen = deferred_acceptance(scorer, DEFERRED_K, stats)
        pairs = commit(pool, scorer, chosen)
    report = {
        "seconds": seconds,
        "k": DEFERRED_K,
        "rounds": stats.rounds,
        "searches": stats.searches,
        "proposals": stats.proposals,
    }
    return pairs, report, chosen


def blocking(scorer: BatchScorer, assignments: Mapping[str, Ints], seed: int) -> dict[str, Any]:
    """Blocking pairs of each assignment, exact for every mentee or a seeded sample of them
    (BLOCKING_SCORED pairs against every mentor), with the estimate for all mentees."""
    mentees, mentors = len(scorer.mentees), len(scorer.pool)
    size = min(mentees, BLOCKING_SCORED // max(mentors, 1))
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(mentees, size, replace=False)) if size < mentees else None
    started = time.perf_counter()
    counts = blocking_pairs(scorer, list(assignments.values()), sample)
    scale = mentees / max(size, 1)
    return {
        "mentees_checked": size,
        "of_mentees": mentees,
        "seconds": round(time.perf_counter() - started, 3),
        **{
            name: {"found": count, "estimate_all_mentees": round(count * scale)}
            for name, count in zip(assignments, counts, strict=True)
        },
    }


def compare(
    mentees: int, mentors: int, seed: int, config: ProgramConfig, full_checks: bool
) -> dict[str, Any]:
    """Flow, greedy and deferred acceptance on one instance, checked, with the blocking pairs of
    the flow's and deferred acceptance's; with `full_checks`, the exact optimum too."""
    pool, mentee_list, excluded = instance(mentees, mentors, seed)
    initial = pool.load.copy()
    initial_load = {m.person_id: int(pool.load[j]) for j, m in enumerate(pool.mentors)}
    places = int((pool.capacity - pool.load).sum())
    result: dict[str, Any] = {
        "instance": {"mentees": mentees, "mentors": mentors, "free_places": places, "seed": seed}
    }
    exact = optimum(pool, mentee_list, config, excluded) if full_checks else None

    pairs, flow, scorer, flow_chosen = run_flow(pool, mentee_list, config, excluded)
    flow.update(summary(pairs, pool))
    bound = min(flow["eligible_mentees"], places)
    flow["coverage"] = round(len(pairs) / max(flow["eligible_mentees"], 1), 4)
    flow["coverage_of_bound"] = round(len(pairs) / max(bound, 1), 4)
    flow["violations"] = check(pool, initial_load, pairs, config, excluded)
    flow["unassigned_with_free_eligible_mentor"] = free_eligible_left(
        pool, mentee_list, pairs, config, excluded, UNASSIGNED_CHECKED
    )
    flow["peak_rss_mb_so_far"] = round(peak_rss_mb(), 1)
    result["flow"] = flow

    pool.load[:] = initial
    seconds: dict[str, float] = {}
    with timed(seconds, "total"):
        greedy_pairs = assign_greedy(pool, mentee_list, config, excluded, workers=usable_cpus())
    greedy = {"seconds": seconds, **summary(greedy_pairs, pool)}
    greedy["violations"] = check(pool, initial_load, greedy_pairs, config, excluded)
    result["greedy"] = greedy
    result["flow_over_greedy"] = round(flow["total_score"] / max(greedy["total_score"], 1e-9), 4)

    pool.load[:] = initial
    stable_pairs, stable, stable_chosen = run_deferred_acceptance(
        pool, mentee_list, config, excluded
    )
    stable.update(summary(stable_pairs, pool))
    stable["violations"] = check(pool, initial_load, stable_pairs, config, excluded)
    result["deferred_acceptance"] = stable
    result["deferred_acceptance_over_flow"] = round(
        stable["total_score"] / max(flow["total_score"], 1e-9), 4
    )
    result["blocking_pairs"] = blocking(
        scorer, {"flow": flow_chosen, "deferred_acceptance": stable_chosen}, seed
    )
    if exact is not None:
        best = exact["total_score"]
        exact["flow_ratio"] = round(flow["total_score"] / best, 5)
        exact["greedy_ratio"] = round(greedy["total_score"] / best, 5)
        exact["deferred_acceptance_ratio"] = round(stable["total_score"] / best, 5)
        result["optimum"] = exact
    return result


def cohort(quick: bool) -> dict[str, Any]:
    """Speed at scale, then quality against the exact optimum on a smaller instance."""
    config = ProgramConfig(rules=RULES, mode="cohort")
    big, small = ((5_000, 1_000), (2_000, 400)) if quick else ((100_000, 20_000), (10_000, 2_000))
    roomy = (800, 400) if quick else (4_000, 2_000)  # more free places than mentees
    return {
        "definitions": {
            "coverage": "matched / mentees with at least one eligible mentor with a free place"
            " before assignment",
            "coverage_of_bound": "matched / min(those mentees, free places): 1.0 is the most"
            " anyone could match",
            "unassigned_with_free_eligible_mentor": "unassigned mentees (a sample) that `rank` still"
            " finds an eligible mentor with a free place for, after assignment: must be 0",
            "load_gini": "Gini coefficient of load / capacity over mentors, after assignment",
            "seconds": "wall clock; candidates = prepare + every round's search, flow = every"
            " round's OR-Tools solve; cpu_total counts every thread",
            "peak_rss_mb_so_far": "the process's peak so far (scale runs first, so its figure"
            " is the matcher's own at 100k x 20k, instance included)",
            "violations": "broken hard rules counted by an independent checker: must all be 0",
            "optimum": "min-cost flow over every eligible pair, scored mentee by mentee with"
            " criteria_values",
            "deferred_acceptance": "mentee-proposing deferred acceptance, both sides ranking by"
            " the pair's score: a stable assignment, the best stable one for every mentee",
            "blocking_pairs": "eligible (mentee, mentor) pairs who would both rather be together"
            " than with their assignment (the pair scores more than the mentee's own, and the"
            " mentor has a free place or a mentee scoring less), counted exactly for the"
            " mentees_checked (all, or a seeded sample against every mentor) and scaled to all",
        },
        "rules": RULES.model_dump(),
        "scale": compare(*big, seed=1, config=config, full_checks=False),
        "quality": compare(*small, seed=2, config=config, full_checks=True),
        "quality_roomy": compare(*roomy, seed=3, config=config, full_checks=True),
    }


SECTIONS: dict[str, Callable[[bool], dict[str, Any]]] = {"cohort": cohort}


@contextmanager
def timed(into: dict[str, float], key: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        into[key] = round(into.get(key, 0.0) + time.perf_counter() - started, 3)


def main() -> None:
    args = arguments(__doc__ or "matching benchmark")
    report: dict[str, Any] = {
        "benchmark": "matching",
        "quick": args.quick,
        "machine": {
            **machine(),
            "numpy": np.__version__,
            "ortools": ortools.__version__,
            "solver_threads": usable_cpus(),
        },
        "load_average_before": [round(x, 2) for x in os.getloadavg()],  # a shared machine
        "sections": {},
    }
    for name, section in SECTIONS.items():
        report["sections"][name] = section(args.quick)
    report["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    report["peak_rss_mb"] = round(peak_rss_mb(), 1)
    emit(report)


if __name__ == "__main__":
    main()
