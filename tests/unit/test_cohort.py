"""Cohort matching: hard rules, optimality against brute force and the full flow, greedy baseline,
and the batched candidate search against `rank`, on small random programs; the solver's threads."""

from __future__ import annotations

import os
import random
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.matching.cpus import cpu_quota, usable_cpus
from services.matching.domain.candidates import BatchScorer
from services.matching.domain.cohort import Assignment, assign, assign_greedy, min_cost_assignment
from services.matching.domain.config import CRITERIA, ProgramConfig
from services.matching.domain.criteria import utc_offset_hours
from services.matching.domain.explain import explain
from services.matching.domain.scoring import (
    Mentee,
    Mentor,
    MentorPool,
    criteria_values,
    eligible,
    rank,
)
from shared.contract.events import ProgramRules

pytestmark = pytest.mark.unit
NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
# names of the shipped taxonomy: aliases ("ML", "k8s") and related, broader or narrower topics
TOPICS = [
    "public speaking",
    "storytelling",
    "Python",
    "django",
    "ML",
    "machine learning",
    "leadership",
    "management",
    "sales",
    "k8s",
    "docker",
]
ZONES = ["Europe/Paris", "America/New_York", "Asia/Tokyo", "Europe/London", "Asia/Kolkata"]
LANGUAGES = ["en", "fr", "de", "es"]
DEPARTMENTS = [None, "eng", "sales", "hr"]

Program = tuple[list[Mentor], list[Mentee], ProgramConfig, dict[str, set[str]]]


def program(seed: int, mentors: int, mentees: int, rules: bool = True) -> Program:
    """A random program: people who are both mentor and mentee, managers, refusals, odd weights."""
    rng = random.Random(seed)
    mentor_list = [
        Mentor(
            f"m{j}",
            tuple(rng.sample(LANGUAGES, rng.randint(1, 2))),
            rng.choice(ZONES),
            rng.choice(DEPARTMENTS),
            rng.choice([None, *range(1, 11)]),
            manager_id=rng.choice([None, "m0"]),
            expertise=tuple(
                (rng.choice(TOPICS), rng.randint(1, 5)) for _ in range(rng.randint(0, 3))
            ),
            capacity=rng.randint(0, 3),
            load=rng.randint(0, 1),
            rating_sum=rng.randint(0, 40),
            rating_count=rng.randint(0, 8),
            learning_interests=tuple(rng.sample(TOPICS, rng.choice([0, 0, 1, 2]))),
        )
        for j in range(mentors)
    ]
    mentee_list = [
        Mentee(
            f"m{rng.randrange(mentors)}" if mentors and rng.random() < 0.15 else f"e{i}",
            tuple(rng.choices([*LANGUAGES, "xx"], k=rng.randint(1, 3))),
            rng.choice(ZONES),
            rng.choice(DEPARTMENTS),
            rng.choice([None, *range(1, 8)]),
            f"m{rng.randrange(mentors)}" if mentors and rng.random() < 0.3 else None,
            goals=tuple(
                (rng.choice([*TOPICS, "cooking"]), rng.randint(1, 3))
                for _ in range(rng.randint(0, 3))
            ),
            offers=tuple(rng.choices([*TOPICS, "cooking"], k=rng.choice([0, 0, 1, 2, 3]))),
        )
        for i in range(mentees)
    ]
    excluded = {
        e.person_id: {f"m{rng.randrange(mentors)}"}
        for e in mentee_list
        if mentors and rng.random() < 0.25
    }
    weights = {c: rng.choice([0.0, 0.1, 0.3, 0.6]) for c in CRITERIA}
    if rng.random() < 0.2:
        weights["load"] = -0.2  # negative weights are allowed: scores can go below zero
    config = ProgramConfig(
        weights=weights,
        rules=ProgramRules(
            max_timezone_difference_hours=rng.choice([None, 4, 9]),
            department=rng.choice(["any", "cross", "same"]),
            min_seniority_gap=rng.choice([None, 0, 1]),
            min_topic_fit=rng.choice([0.0, 0.01, 0.2, 0.45]),
        )
        if rules
        else ProgramRules(min_topic_fit=rng.choice([0.0, 0.01])),
    )
    return mentor_list, mentee_list, config, excluded


def broken_rules(
    pairs: Assignment,
    mentors: list[Mentor],
    config: ProgramConfig,
    excluded: Mapping[str, set[str]],
) -> list[str]:
    """Every hard rule the pairs break, checked from the records alone."""
    problems, rules = [], config.rules
    for mentee, candidate in pairs:
        mentor = candidate.mentor
        if not set(mentee.languages) & set(mentor.languages):
            problems.append("language")
        if mentor.person_id in (mentee.person_id, mentee.manager_id):
            problems.append("self or manager")
        if mentor.person_id in excluded.get(mentee.person_id, ()):
            problems.append("excluded")
        gap = abs(utc_offset_hours(mentor.timezone, NOW) - utc_offset_hours(mentee.timezone, NOW))
        limit = rules.max_timezone_difference_hours
        if limit is not None and min(gap, 24 - gap) > limit:
            problems.append("timezone")
        same = mentor.department == mentee.department
        if (rules.department == "same" and (not same or mentee.department is None)) or (
            rules.department == "cross" and same
        ):
            problems.append("department")
        if (
            rules.min_seniority_gap is not None
            and mentor.seniority is not None
            and mentee.seniority is not None
            and mentor.seniority - mentee.seniority < rules.min_seniority_gap
        ):
            problems.append("seniority")
        fit = record_topic_fit(mentee, mentor, config)
        if rules.min_topic_fit > 0 and not (fit > 0 and fit >= rules.min_topic_fit - 1e-12):
            problems.append("topic fit")
    taken = Counter(c.mentor.person_id for _, c in pairs)
    problems += ["capacity" for m in mentors if taken[m.person_id] > max(m.capacity - m.load, 0)]
    problems += ["twice" for n in Counter(id(m) for m, _ in pairs).values() if n > 1]
    return problems


def record_topic_fit(mentee: Mentee, mentor: Mentor, config: ProgramConfig) -> float:
    """The topic fit from the records and the taxonomy's credits, in plain Python."""
    weights = [4 - priority for _, priority in mentee.goals]
    covered = [
        max(
            (level / 5 * config.taxonomy.credit(goal, topic) for topic, level in mentor.expertise),
            default=0.0,
        )
        for goal, _ in mentee.goals
    ]
    return sum(w * c for w, c in zip(weights, covered, strict=True)) / (sum(weights) or 1)


def eligible_pairs(
    pool: MentorPool, mentees: list[Mentee], config: ProgramConfig, excluded: Mapping[str, set[str]]
) -> list[dict[int, float]]:
    """Every eligible mentor of each mentee with its score, from `rank` (the reference)."""
    return [
        {
            pool.index[c.mentor.person_id]: c.score
            for c in rank(pool, m, config, excluded.get(m.person_id, ()), limit=max(len(pool), 1))
        }
        for m in mentees
    ]


def brute_force(options: list[dict[int, float]], free: list[int], lowest: float) -> float:
    """The best total of score - lowest over every assignment (tiny programs only)."""
    if not options:
        return 0.0
    head, rest = options[0], options[1:]
    best = brute_force(rest, free, lowest)
    for mentor, score in head.items():
        if free[mentor] > 0:
            free[mentor] -= 1
            best = max(best, score - lowest + brute_force(rest, free, lowest))
            free[mentor] += 1
    return best


def exact_optimum(options: list[dict[int, float]], free: np.ndarray, lowest: float) -> float:
    """The best total of score - lowest: min-cost flow over every eligible pair."""
    rows = np.array([i for i, o in enumerate(options) for _ in o], dtype=np.int64)
    mentors = np.array([j for o in options for j in o], dtype=np.int64)
    scores = np.array([s for o in options for s in o.values()])
    chosen = min_cost_assignment(rows, mentors, scores, len(options), free, lowest)
    return sum(options[i][j] - lowest for i, j in enumerate(chosen.tolist()) if j >= 0)


def total(pairs: Assignment, lowest: float = 0.0) -> float:
    """The assignment's total score, each pair counted from the lowest score a pair can have.

    With negative weights a pair can score below zero: cohort matching still prefers matching a
    mentee to leaving them out, so it maximises this shifted total (the plain one otherwise).
    """
    return sum(c.score - lowest for _, c in pairs)


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 10**6), st.integers(0, 12), st.integers(0, 25), st.integers(1, 6))
def test_no_hard_rule_is_ever_broken(seed: int, mentors: int, mentees: int, k: int) -> None:
    mentor_list, mentee_list, config, excluded = program(seed, mentors, mentees)
    pool = MentorPool(mentor_list, NOW)
    before = pool.load.copy()
    pairs = assign(pool, mentee_list, config, excluded, k=k)
    assert broken_rules(pairs, mentor_list, config, excluded) == []
    taken = Counter(pool.index[c.mentor.person_id] for _, c in pairs)
    assert pool.load.tolist() == [before[j] + taken[j] for j in range(len(pool))]
    greedy = assign_greedy(MentorPool(mentor_list, NOW), mentee_list, config, excluded)
    assert broken_rules(greedy, mentor_list, config, excluded) == []


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 10**6))
def test_tiny_programs_reach_the_brute_force_optimum(seed: int) -> None:
    mentor_list, mentee_list, config, excluded = program(seed, 4, 6)
    pool = MentorPool(mentor_list, NOW)
    options = eligible_pairs(pool, mentee_list, config, excluded)
    lowest = BatchScorer(pool, [], config).lowest
    best = brute_force(options, (pool.capacity - pool.load).clip(0).tolist(), lowest)
    pairs = assign(pool, mentee_list, config, excluded, k=len(mentor_list))
    assert total(pairs, lowest) == pytest.approx(best, abs=1e-5)


@pytest.mark.parametrize("seed", range(8))
def test_total_is_the_optimum_when_k_covers_every_mentor(seed: int) -> None:
    mentor_list, mentee_list, config, excluded = program(seed, 15, 60, rules=seed % 2 == 0)
    pool = MentorPool(mentor_list, NOW)
    options = eligible_pairs(pool, mentee_list, config, excluded)
    lowest = BatchScorer(pool, [], config).lowest
    best = exact_optimum(options, (pool.capacity - pool.load).clip(0), lowest)
    greedy = assign_greedy(MentorPool(mentor_list, NOW), mentee_list, config, excluded)
    pairs = assign(pool, mentee_list, config, excluded, k=len(mentor_list))
    assert total(pairs, lowest) == pytest.approx(best, abs=1e-4)
    assert total(greedy, lowest) <= total(pairs, lowest) + 1e-4


@pytest.mark.parametrize("seed", range(6))
def test_default_k_beats_greedy_and_nearly_reaches_the_optimum(seed: int) -> None:
    mentor_list, mentee_list, config, excluded = program(100 + seed, 60, 400, rules=False)
    pool = MentorPool(mentor_list, NOW)
    options = eligible_pairs(pool, mentee_list, config, excluded)
    lowest = BatchScorer(pool, [], config).lowest
    best = exact_optimum(options, (pool.capacity - pool.load).clip(0), lowest)
    greedy = assign_greedy(MentorPool(mentor_list, NOW), mentee_list, config, excluded)
    pairs = assign(pool, mentee_list, config, excluded)
    assert total(greedy, lowest) <= total(pairs, lowest) <= best + 1e-4
    assert total(pairs, lowest) >= 0.98 * best


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 10**6), st.integers(1, 4))
def test_mentees_are_left_out_only_when_no_eligible_place_remains(seed: int, k: int) -> None:
    mentor_list, mentee_list, config, excluded = program(seed, 10, 30)
    pool = MentorPool(mentor_list, NOW)
    pairs = assign(pool, mentee_list, config, excluded, k=k)
    placed = {id(m) for m, _ in pairs}
    for mentee in mentee_list:
        if id(mentee) not in placed:  # the pool's loads now include the assignments
            assert rank(pool, mentee, config, excluded.get(mentee.person_id, ())) == []


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 10**6), st.integers(1, 30))
def test_batched_search_scores_equal_rank(seed: int, k: int) -> None:
    mentor_list, mentee_list, config, excluded = program(seed, 30, 20)
    pool = MentorPool(mentor_list, NOW)
    scorer = BatchScorer(pool, mentee_list, config, excluded)
    found = scorer.search(k, 3)
    weights = config.normalised_weights()
    for i, mentee in enumerate(mentee_list):
        refused = excluded.get(mentee.person_id, ())
        reference = [c.score for c in rank(pool, mentee, config, refused, limit=k)]
        listed = found.best_mentors.scores[i][found.best_mentors.mentors[i] >= 0]
        assert listed.tolist() == pytest.approx(reference, abs=1e-12)

        values = criteria_values(pool, mentee, config)
        everyone = np.arange(len(pool))
        batched = scorer.values(np.full(len(pool), i), everyone)
        for criterion in CRITERIA:
            assert np.array_equal(batched.of(criterion), values.of(criterion))
        assert np.array_equal(batched.shared_languages, values.shared_languages)
        assert np.array_equal(batched.gap_hours, values.gap_hours)
        assert np.array_equal(batched.seniority_gap, values.seniority_gap, equal_nan=True)
        ok = eligible(pool, mentee, config, values, refused)
        assert np.array_equal(
            scorer.eligible(np.full(len(pool), i), everyone, batched, scorer.free), ok
        )
        weighted = sum(weights[c] * values.of(c) for c in CRITERIA)
        assert np.array_equal(batched.score(weights), weighted)
    options = eligible_pairs(pool, mentee_list, config, excluded)
    for i, j, score in zip(found.mentee_rows, found.mentor_rows, found.scores, strict=True):
        assert options[i][j] == pytest.approx(score, abs=1e-12)  # mentors' lists: eligible pairs
    # exact lists: the very mentors, ties by id, even where the float32 product cannot tell
    exact = scorer.top_k(k, exact=True)
    for i, mentors in enumerate(options):
        ids = {j: pool.mentors[j].person_id for j in mentors}
        best = sorted(mentors, key=lambda j: (-mentors[j], ids[j]))[:k]
        assert exact.mentors[i][exact.mentors[i] >= 0].tolist() == best
        assert exact.scores[i][: len(best)].tolist() == [mentors[j] for j in best]


def test_candidates_explain_and_carry_the_load_they_were_scored_with() -> None:
    mentor_list, mentee_list, config, excluded = program(7, 12, 40)
    pool = MentorPool(mentor_list, NOW)
    loads = {m.person_id: m.load for m in mentor_list}
    pairs = assign(pool, mentee_list, config, excluded)
    assert pairs
    for mentee, candidate in pairs:
        assert candidate.load == loads[candidate.mentor.person_id]
        assert set(candidate.values) == set(CRITERIA)
        score, items = explain(candidate, mentee, config, NOW)
        assert score == pytest.approx(candidate.score, abs=5e-4)
        assert len(items) == len(CRITERIA)


def test_the_same_input_gives_the_same_assignment_on_any_number_of_threads() -> None:
    mentor_list, mentee_list, config, excluded = program(11, 40, 200)
    first = assign(MentorPool(mentor_list, NOW), mentee_list, config, excluded)
    second = assign(MentorPool(mentor_list, NOW), mentee_list, config, excluded, workers=3)
    assert [(id(m), c.mentor.person_id, c.score) for m, c in first] == [
        (id(m), c.mentor.person_id, c.score) for m, c in second
    ]


def test_min_topic_fit_holds_in_the_search_when_the_best_mentors_cover_no_goal() -> None:
    """Mentors best by every other criterion cover none of the goals: the search skips them for
    the mentors covering a goal through a related topic, and without such mentors nobody is
    assigned."""
    config = ProgramConfig(
        weights={"topic_fit": 0.05, "reputation": 0.5, "timezone": 0.3, "seniority": 0.15},
        rules=ProgramRules(min_topic_fit=0.1),
    )
    stars = [  # in the mentees' time zone, senior enough and highly rated: sales is no python
        Mentor(
            f"s{i}",
            ("en",),
            "Europe/Paris",
            seniority=6,
            expertise=(("sales", 5),),
            rating_sum=50,
            rating_count=10,
        )
        for i in range(10)
    ]
    weak = [  # java covers python as a sibling: 0.3 x 1/5 = 0.06, under the minimum
        Mentor(f"w{i}", ("en",), "Europe/Paris", seniority=6, expertise=(("java", 1),))
        for i in range(2)
    ]
    covering = [  # django is narrower than python: 0.8 x 2/5 = 0.32
        Mentor(f"c{i}", ("en",), "Asia/Tokyo", expertise=(("Django", 2),)) for i in range(3)
    ]
    elsewhere = [Mentor("f0", ("fr",), "Europe/Paris", expertise=(("python", 5),))]
    learners = [
        Mentee(f"e{i}", ("en",), "Europe/Paris", seniority=3, goals=(("Python", 1),))
        for i in range(3)
    ]
    cook = Mentee("cook", ("en",), "Europe/Paris", goals=(("cooking", 1),))

    pool = MentorPool([*stars, *weak, *covering, *elsewhere], NOW)
    listed = BatchScorer(pool, [*learners, cook], config).top_k(2)
    for i, mentee in enumerate(learners):
        names = [pool.mentors[j].person_id for j in listed.mentors[i] if j >= 0]
        assert len(names) == 2 and set(names) <= {"c0", "c1", "c2"}
        assert listed.scores[i].tolist() == [c.score for c in rank(pool, mentee, config, limit=2)]
    assert listed.mentors[3].tolist() == [-1, -1] and listed.complete[3]  # nobody covers cooking
    pairs = assign(pool, [*learners, cook], config, k=1)
    assert sorted(m.person_id for m, _ in pairs) == ["e0", "e1", "e2"]  # the cook is left out
    assert sorted(c.mentor.person_id for _, c in pairs) == ["c0", "c1", "c2"]

    pool = MentorPool([*stars, *weak, *elsewhere], NOW)  # python only in French
    listed = BatchScorer(pool, learners, config).top_k(2)
    assert (listed.mentors == -1).all() and listed.complete.all()
    assert assign(pool, learners, config, k=1) == []


def test_empty_and_full_programs() -> None:
    mentor_list, mentee_list, config, _ = program(3, 5, 5, rules=False)
    assert assign(MentorPool(mentor_list, NOW), [], config) == []
    assert assign(MentorPool([], NOW), mentee_list, config) == []
    full = [Mentor(m.person_id, m.languages, m.timezone, capacity=1, load=1) for m in mentor_list]
    assert assign(MentorPool(full, NOW), mentee_list, config) == []


@pytest.mark.parametrize(
    ("files", "cpus"),
    [
        ({}, None),
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu.max": "200000 100000\n"}, 2),
        ({"cpu.max": "150000 100000"}, 2),  # one and a half CPUs: two threads
        ({"cpu.max": "20000 100000"}, 1),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({"cpu/cpu.cfs_quota_us": "400000", "cpu/cpu.cfs_period_us": "100000"}, 4),
        ({"cpu,cpuacct/cpu.cfs_quota_us": "250000", "cpu,cpuacct/cpu.cfs_period_us": "100000"}, 3),
    ],
)
def test_cpu_quota_of_cgroup_v2_and_v1(
    tmp_path: Path, files: dict[str, str], cpus: int | None
) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cpu_quota(tmp_path) == cpus


def test_solver_threads_follow_affinity_capped_by_the_quota(tmp_path: Path) -> None:
    affinity = len(os.sched_getaffinity(0))
    assert usable_cpus(tmp_path) == affinity  # no quota
    (tmp_path / "cpu.max").write_text(f"{(affinity + 3) * 100000} 100000")
    assert usable_cpus(tmp_path) == affinity
    (tmp_path / "cpu.max").write_text("100000 100000")
    assert usable_cpus(tmp_path) == 1
