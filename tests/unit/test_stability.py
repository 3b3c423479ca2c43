"""Stability of cohort assignments: deferred acceptance against brute force, and blocking pairs
counted by `blocking_pairs` against a plain count from `rank`'s scores."""

from __future__ import annotations

import itertools
import random
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.matching.domain.candidates import BatchScorer
from services.matching.domain.cohort import (
    DeferredStats,
    assign_deferred_acceptance,
    blocking_pairs,
    deferred_acceptance,
    greedy,
    solve,
)
from services.matching.domain.scoring import MentorPool
from tests.unit.test_cohort import NOW, broken_rules, eligible_pairs, program

pytestmark = pytest.mark.unit

Options = list[dict[int, float]]  # each mentee's eligible mentors and the pair's score


def count_blocking(
    options: Options, chosen: list[int], places: list[int], mentees: set[int] | None = None
) -> int:
    """Blocking pairs in plain Python: both would rather be together than with their assignment
    (only those of `mentees`, when given)."""
    own = [options[i][j] if j >= 0 else -np.inf for i, j in enumerate(chosen)]
    taken = Counter(j for j in chosen if j >= 0)
    worst = {j: min(own[i] for i, c in enumerate(chosen) if c == j) for j in taken}
    return sum(
        score > own[i] and (taken[j] < places[j] or score > worst[j])
        for i, mentors in enumerate(options)
        if mentees is None or i in mentees
        for j, score in mentors.items()
    )


def stable_assignments(
    options: Options, places: list[int], mentor_rank: list[int]
) -> list[list[int]]:
    """Every assignment stable under strict preferences (tiny programs only): a mentee prefers
    higher scores, then the mentor first by id (`mentor_rank`); a mentor higher scores, then the
    mentee listed first."""

    def mentee_key(i: int, j: int) -> tuple[float, int]:
        return (options[i][j], -mentor_rank[j]) if j >= 0 else (-np.inf, 0)

    stable = []
    for chosen in itertools.product(*[[-1, *o] for o in options]):
        taken = Counter(j for j in chosen if j >= 0)
        if any(taken[j] > places[j] for j in taken):
            continue
        worst = {j: min((options[i][j], -i) for i, c in enumerate(chosen) if c == j) for j in taken}
        if not any(
            mentee_key(i, j) > mentee_key(i, chosen[i])
            and (taken[j] < places[j] or (score, -i) > worst[j])
            for i, mentors in enumerate(options)
            for j, score in mentors.items()
        ):
            stable.append(list(chosen))
    return stable


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 10**6), st.integers(0, 12), st.integers(0, 30), st.integers(1, 4))
def test_deferred_acceptance_leaves_no_blocking_pair(
    seed: int, mentors: int, mentees: int, k: int
) -> None:
    mentor_list, mentee_list, config, excluded = program(seed, mentors, mentees)
    pool = MentorPool(mentor_list, NOW)
    scorer = BatchScorer(pool, mentee_list, config, excluded)
    chosen = deferred_acceptance(scorer, k)
    places = scorer.free.tolist()
    options = eligible_pairs(pool, mentee_list, config, excluded)
    assert count_blocking(options, chosen.tolist(), places) == 0
    assert blocking_pairs(scorer, [chosen]) == [0]
    # the same assignment whatever the length of the lists (short ones are searched again)
    assert deferred_acceptance(scorer, max(mentors, 1)).tolist() == chosen.tolist()
    pairs = assign_deferred_acceptance(pool, mentee_list, config, excluded, k=k)
    assert broken_rules(pairs, mentor_list, config, excluded) == []
    assert [scorer.pool.index[c.mentor.person_id] for _, c in pairs] == chosen[chosen >= 0].tolist()


def test_lists_of_one_mentor_are_searched_again_until_none_is_left() -> None:
    """k = 1: many mentees run through several lists, each searched against the mentors' bars."""
    searches = []
    for seed in range(60):
        mentor_list, mentee_list, config, excluded = program(seed, 12, 30)
        pool = MentorPool(mentor_list, NOW)
        scorer = BatchScorer(pool, mentee_list, config, excluded)
        stats = DeferredStats()
        chosen = deferred_acceptance(scorer, 1, stats)
        searches.append(stats.searches)
        assert blocking_pairs(scorer, [chosen]) == [0]
        assert deferred_acceptance(scorer, 12).tolist() == chosen.tolist()
    assert max(searches) >= 4


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 10**6), st.integers(1, 2))
def test_deferred_acceptance_is_the_best_stable_assignment_for_every_mentee(
    seed: int, k: int
) -> None:
    mentor_list, mentee_list, config, excluded = program(seed, 3, 5)
    pool = MentorPool(mentor_list, NOW)
    scorer = BatchScorer(pool, mentee_list, config, excluded)
    options = eligible_pairs(pool, mentee_list, config, excluded)
    stable = stable_assignments(options, scorer.free.tolist(), scorer.id_rank.tolist())
    assert stable  # there always is one

    def preference(i: int, j: int) -> tuple[float, int]:
        return (options[i][j], -int(scorer.id_rank[j])) if j >= 0 else (-np.inf, 0)

    best = [max((s[i] for s in stable), key=lambda j, i=i: preference(i, j)) for i in range(5)]
    assert best in stable  # the mentee-optimal stable assignment
    assert deferred_acceptance(scorer, k).tolist() == best


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 10**6), st.integers(1, 4))
def test_blocking_pairs_agree_with_a_plain_count(seed: int, k: int) -> None:
    mentor_list, mentee_list, config, excluded = program(seed, 10, 30)
    pool = MentorPool(mentor_list, NOW)
    scorer = BatchScorer(pool, mentee_list, config, excluded)
    flow = solve(scorer, k)
    in_order = np.full(len(mentee_list), -1, dtype=np.int64)
    greedy(scorer, k, np.arange(len(mentee_list)), scorer.free.copy(), in_order)
    options = eligible_pairs(pool, mentee_list, config, excluded)
    places = scorer.free.tolist()
    at_random = np.full(len(mentee_list), -1, dtype=np.int64)  # mentees left out, places left
    rng, left = random.Random(seed), list(places)
    for i, mentors in enumerate(options):
        open_ones = [j for j in mentors if left[j] > 0]
        if open_ones and rng.random() < 0.6:
            at_random[i] = rng.choice(open_ones)
            left[at_random[i]] -= 1
    assignments = [flow, in_order, at_random]
    expected = [count_blocking(options, c.tolist(), places) for c in assignments]
    assert blocking_pairs(scorer, assignments) == expected
    # a sample of mentees counts the blocking pairs they are in
    sample = np.arange(0, len(mentee_list), 3)
    assert blocking_pairs(scorer, [flow], sample) == [
        count_blocking(options, flow.tolist(), places, set(sample.tolist()))
    ]


@pytest.mark.parametrize("seed", range(6))
def test_the_flow_scores_more_in_all_and_deferred_acceptance_is_stable(seed: int) -> None:
    mentor_list, mentee_list, config, excluded = program(200 + seed, 40, 200, rules=False)
    pool = MentorPool(mentor_list, NOW)
    scorer = BatchScorer(pool, mentee_list, config, excluded)
    flow = solve(scorer, len(mentor_list))  # the optimum: every mentor a candidate
    stats = DeferredStats()
    stable = deferred_acceptance(scorer, 2, stats)
    assert stats.searches > 1 and stats.proposals >= (stable >= 0).sum()

    def total(chosen: np.ndarray) -> float:
        rows = np.flatnonzero(chosen >= 0)
        return float(
            scorer.values(rows, chosen[rows]).score(scorer.weights).sum()
            - scorer.lowest * len(rows)
        )

    assert total(stable) <= total(flow) + 1e-9
    flow_blocking, stable_blocking = blocking_pairs(scorer, [flow, stable])
    assert stable_blocking == 0
    assert flow_blocking > 0  # the best total is not stable on these programs
