"""Cohort mode: every waiting mentee assigned at once, for the highest total score under capacities.

A min-cost flow (OR-Tools) over candidate pairs from `BatchScorer.search`: each mentee's best k
mentors and each mentor's best PER_MENTOR mentees, never a full mentees x mentors matrix.

    source -> mentee (capacity 1) -> candidate mentor (capacity 1, cost -score) -> mentor
    mentor -> sink (capacity: the mentor's free places);  mentee -> sink (cost 0: unassigned)

so it is always feasible. Mentees left out because their candidates went to others get another
round over the mentors with places left, until no unassigned mentee has an eligible mentor with a
free place (after MAX_ROUNDS, the last ones are placed greedily). Scores are shifted up by the
lowest score a pair can have (below zero only with negative weights) and by one cost unit, so
every pair is worth more than leaving its mentee unassigned and ties favour matching more mentees.

Two baselines on the same candidate search: `greedy` (mentees in order take their best mentor
left) and `deferred_acceptance` (stable: no mentee and mentor would both rather be together than
with their assignment); `blocking_pairs` counts the pairs that would, in any assignment.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from ortools.graph.python import min_cost_flow

from services.matching.domain.candidates import BatchScorer
from services.matching.domain.config import ProgramConfig
from services.matching.domain.criteria import Floats, Ints
from services.matching.domain.scoring import Candidate, Mentee, MentorPool

SCARCE_K = 3  # each mentee's best mentors in the first round, when places are fewer than mentees
ROOMY_K = 5  # and when they are not: then who gets which mentor matters more than who gets one
PER_MENTOR = 16  # each mentor's best mentees in every round (ranked as in candidates.REGRET)
LATER_K = 2  # each waiting mentee's best mentors with places left, in later rounds
COST_SCALE = 1_000_000  # flow costs are integers: a score of 1 costs -1e6
MAX_ROUNDS = 8  # flow rounds before the last unassigned mentees are placed greedily
GREEDY_K = 32  # greedy: candidates listed per mentee
REFRESH = 4096  # greedy: mentees whose candidate lists are searched again at once
DEFERRED_K = 8  # deferred acceptance: mentors listed per mentee and search
PAIRS_AT_ONCE = 1 << 20  # blocking_pairs: pairs scored at once

Assignment = list[tuple[Mentee, Candidate]]
# min_cost_assignment's signature: callers may run it elsewhere (OR-Tools' solve holds the GIL)
Flow = Callable[[Ints, Ints, Floats, int, Ints, float], Ints]


@dataclass
class SolveStats:
    """What one cohort solve did, for logs and benchmarks."""

    candidate_seconds: float = 0.0
    flow_seconds: float = 0.0
    greedy_seconds: float = 0.0
    k: int = 0
    rounds: int = 0
    arcs: int = 0
    eligible_mentees: int = 0  # mentees with an eligible mentor with a free place, at the start
    greedy_placed: int = 0


def assign(
    pool: MentorPool,
    mentees: Sequence[Mentee],
    config: ProgramConfig,
    excluded: Mapping[str, set[str]] | None = None,
    k: int | None = None,
    workers: int = 1,
    flow: Flow | None = None,
) -> Assignment:
    """Assign the mentees for the highest total score; unassigned ones are left out of the result.

    `excluded` maps a mentee's person id to mentors it must never get; `k` is how many of each
    mentee's best mentors the first round considers (default SCARCE_K or ROOMY_K); candidates are
    searched on `workers` threads and each round's flow solved by `flow` (see `solve`). The pool's
    loads are updated with the assignments; each `Candidate` carries the values and load it was
    scored with.
    """
    scorer = BatchScorer(pool, mentees, config, excluded, workers)
    return commit(pool, scorer, solve(scorer, k, flow=flow))


def assign_greedy(
    pool: MentorPool,
    mentees: Sequence[Mentee],
    config: ProgramConfig,
    excluded: Mapping[str, set[str]] | None = None,
    k: int | None = None,
    workers: int = 1,
) -> Assignment:
    """The baseline: mentees in order, each takes its best eligible mentor with a place left."""
    scorer = BatchScorer(pool, mentees, config, excluded, workers)
    chosen = np.full(len(scorer.mentees), -1, dtype=np.int64)
    greedy(scorer, k or GREEDY_K, np.arange(len(chosen)), scorer.free.copy(), chosen)
    return commit(pool, scorer, chosen)


def assign_deferred_acceptance(
    pool: MentorPool,
    mentees: Sequence[Mentee],
    config: ProgramConfig,
    excluded: Mapping[str, set[str]] | None = None,
    k: int | None = None,
    workers: int = 1,
) -> Assignment:
    """The stable baseline: mentee-proposing deferred acceptance (see `deferred_acceptance`)."""
    scorer = BatchScorer(pool, mentees, config, excluded, workers)
    return commit(pool, scorer, deferred_acceptance(scorer, k or DEFERRED_K))


@dataclass
class DeferredStats:
    """What one deferred acceptance did."""

    rounds: int = 0  # rounds of proposals
    searches: int = 0  # candidate searches, the first included
    proposals: int = 0


def deferred_acceptance(
    scorer: BatchScorer, k: int = DEFERRED_K, stats: DeferredStats | None = None
) -> Ints:
    """The mentor row each mentee gets (-1: none) by mentee-proposing deferred acceptance.

    Both sides rank by the pair's score: a mentee prefers the mentors it scores higher with (ties
    by mentor id, as `top_k` lists them), and so does a mentor its mentees (ties to the mentee
    listed first): the score is what the program says makes a pair good, for either side, and
    nothing else is known of what mentors want. With these strict preferences the result is
    stable (no blocking pair) and, of all stable assignments, the best for every mentee.

    Round after round every free mentee proposes to the next mentor of its list (`top_k`, best
    first); a mentor keeps its best proposals up to its free places and turns the others away.
    When no proposal is left to make, the mentees at the end of their lists get new ones, all in
    one search, among the mentors they have not proposed to yet and whose worst kept mentee they
    could beat (a mentor keeps only better ones from then on); a list holding every such mentor is
    the mentee's last.
    """
    stats = stats or DeferredStats()
    n, m = len(scorer.mentees), len(scorer.pool)
    places = scorer.free
    found = scorer.top_k(k, free=places, exact=True)
    lists, scores, complete = found.mentors, found.scores, found.complete
    stats.searches += 1
    at = np.zeros(n, dtype=np.int64)  # each mentee's next place in its list
    chosen = np.full(n, -1, dtype=np.int64)
    kept = np.full(n, -np.inf)  # the score of each mentee's pair with the mentor keeping it
    proposed = [np.zeros(0, dtype=np.int64)]  # keys mentee row x m + mentor row, never twice
    everyone = np.arange(n)
    while True:
        width = lists.shape[1]
        listed = lists[everyone, np.minimum(at, width - 1)] if width else np.full(n, -1)
        active = np.flatnonzero((chosen < 0) & (at < width) & (listed >= 0))
        if not len(active):
            stuck = np.flatnonzero((chosen < 0) & ~complete)
            if not len(stuck):
                return chosen
            held = chosen >= 0
            taken = np.bincount(chosen[held], minlength=m)
            worst = np.full(m, np.inf)
            np.minimum.at(worst, chosen[held], kept[held])
            bar = np.where(taken >= places, worst, -np.inf)
            proposed = [np.sort(np.concatenate(proposed), kind="stable")]  # sorted, then runs
            found = scorer.top_k(k, stuck, places, bar, proposed[0], exact=True)
            lists[stuck], scores[stuck], at[stuck] = found.mentors, found.scores, 0
            complete[stuck] = found.complete | (found.mentors[:, 0] < 0)
            stats.searches += 1
            continue
        mentors, offered = lists[active, at[active]], scores[active, at[active]]
        at[active] += 1
        proposed.append(active * m + mentors)
        stats.rounds += 1
        stats.proposals += len(active)
        # each mentor proposed to keeps its best places[mentor] of those it kept and the new ones
        touched = np.zeros(m, dtype=bool)
        touched[mentors] = True
        holding = np.flatnonzero((chosen >= 0) & touched[chosen])
        rows = np.concatenate([holding, active])
        cols = np.concatenate([chosen[holding], mentors])
        pair_scores = np.concatenate([kept[holding], offered])
        order = np.lexsort((rows, -pair_scores, cols))
        rows, cols, pair_scores = rows[order], cols[order], pair_scores[order]
        starts = np.flatnonzero(np.r_[True, cols[1:] != cols[:-1]])
        rank = np.arange(len(cols)) - np.repeat(starts, np.diff(np.r_[starts, len(cols)]))
        keep = rank < places[cols]
        chosen[rows] = np.where(keep, cols, -1)
        kept[rows] = np.where(keep, pair_scores, -np.inf)


def blocking_pairs(
    scorer: BatchScorer, assignments: Sequence[Ints], mentees: Ints | None = None
) -> list[int]:
    """For each assignment (a mentor row per mentee, -1: none), how many pairs block it: an
    eligible mentee and mentor who would both rather be together, i.e. the pair scores more than
    the mentee's own pair (or the mentee is unassigned) and the mentor has a free place or a
    mentee scoring less with it. Exact, for `mentees` (rows, default all) against every mentor.
    """
    n, m = len(scorer.mentees), len(scorer.pool)
    rows = np.arange(n) if mentees is None else np.asarray(mentees)
    owns, worsts = [], []
    for chosen in assignments:
        placed = np.flatnonzero(chosen >= 0)
        own = np.full(n, -np.inf)
        own[placed] = scorer.values(placed, chosen[placed]).score(scorer.weights)
        taken = np.bincount(chosen[placed], minlength=m)
        worst = np.full(m, np.inf)
        np.minimum.at(worst, chosen[placed], own[placed])
        worst[taken < scorer.free] = -np.inf  # a free place: any eligible mentee is welcome
        owns.append(own)
        worsts.append(worst)
    counts = [0] * len(assignments)
    cols = np.arange(m)[None, :]
    step = max(1, PAIRS_AT_ONCE // max(m, 1))
    for start in range(0, len(rows) if m else 0, step):
        block = rows[start : start + step, None]
        values = scorer.values(block, cols)
        ok = scorer.eligible(block, cols, values, scorer.free)
        score = np.where(ok, values.score(scorer.weights), -np.inf)
        for a, (own, worst) in enumerate(zip(owns, worsts, strict=True)):
            counts[a] += int(((score > own[block]) & (score > worst[cols])).sum())
    return counts


def solve(
    scorer: BatchScorer,
    k: int | None = None,
    stats: SolveStats | None = None,
    per_mentor: int | None = None,
    flow: Flow | None = None,
) -> Ints:
    """The mentor row chosen for each mentee, -1 for none: flow rounds, then greedy leftovers.

    Each round's graph holds each waiting mentee's best k mentors (LATER_K after the first round)
    and each mentor's best `per_mentor` waiting mentees, among mentors with places left; `flow`
    solves it (default: `min_cost_assignment`, in this thread).
    """
    flow = flow or min_cost_assignment
    stats = stats or SolveStats()
    if k is None:
        k = SCARCE_K if scorer.free.sum() < len(scorer.mentees) else ROOMY_K
    stats.k = k
    per_mentor = PER_MENTOR if per_mentor is None else per_mentor
    free = scorer.free.copy()
    chosen = np.full(len(scorer.mentees), -1, dtype=np.int64)
    waiting = np.arange(len(chosen))
    for _ in range(MAX_ROUNDS):
        started = time.perf_counter()
        found = scorer.search(
            k if stats.rounds == 0 else min(k, LATER_K), per_mentor, waiting, free
        )
        lists = found.best_mentors
        rows, slots = np.nonzero(lists.mentors >= 0)
        mentees = np.concatenate([waiting[rows], found.mentee_rows])
        mentors = np.concatenate([lists.mentors[rows, slots], found.mentor_rows])
        scores = np.concatenate([lists.scores[rows, slots], found.scores])
        stats.candidate_seconds += time.perf_counter() - started
        if stats.rounds == 0:
            stats.eligible_mentees = int((lists.mentors[:, 0] >= 0).sum())
        if not len(mentees):
            return chosen
        started = time.perf_counter()
        _, first = np.unique(mentees * len(free) + mentors, return_index=True)
        ids, tails = np.unique(mentees[first], return_inverse=True)
        got = flow(tails.reshape(-1), mentors[first], scores[first], len(ids), free, scorer.lowest)
        placed = got >= 0
        chosen[ids[placed]] = got[placed]
        free -= np.bincount(got[placed], minlength=len(free))
        waiting = ids[~placed]  # the others have no eligible mentor with a place left
        stats.flow_seconds += time.perf_counter() - started
        stats.rounds += 1
        stats.arcs += len(first)
    started = time.perf_counter()
    before = int((chosen >= 0).sum())
    greedy(scorer, GREEDY_K, waiting, free, chosen)
    stats.greedy_placed += int((chosen >= 0).sum()) - before
    stats.greedy_seconds += time.perf_counter() - started
    return chosen


def min_cost_assignment(
    tails: Ints, mentors: Ints, scores: Floats, rows: int, free: Ints, lowest: float = 0.0
) -> Ints:
    """Each row's mentor (-1: unassigned) in a min-cost flow over candidate pairs.

    Pair i is row `tails[i]` with mentor `mentors[i]` at `scores[i]`; `free` holds every mentor's
    places; `lowest` is the lowest score a pair can have.
    """
    used, local = np.unique(mentors, return_inverse=True)
    local = local.reshape(-1)
    source, sink = rows + len(used), rows + len(used) + 1
    gains = np.rint((scores - lowest) * COST_SCALE).astype(np.int64) + 1
    flow = min_cost_flow.SimpleMinCostFlow()
    arcs = flow.add_arcs_with_capacity_and_unit_cost(
        tails, rows + local, np.ones(len(tails), dtype=np.int64), -gains
    )
    ones, zeros = np.ones(rows, dtype=np.int64), np.zeros(rows, dtype=np.int64)
    flow.add_arcs_with_capacity_and_unit_cost(np.full(rows, source), np.arange(rows), ones, zeros)
    flow.add_arcs_with_capacity_and_unit_cost(np.arange(rows), np.full(rows, sink), ones, zeros)
    flow.add_arcs_with_capacity_and_unit_cost(
        rows + np.arange(len(used)),
        np.full(len(used), sink),
        free[used].astype(np.int64),
        np.zeros(len(used), dtype=np.int64),
    )
    flow.set_nodes_supplies(np.array([source, sink]), np.array([rows, -rows]))
    status = flow.solve()
    if status != flow.OPTIMAL:
        raise RuntimeError(
            f"cohort min-cost flow failed: status={status}, mentees={rows}, arcs={len(tails)}"
        )
    taken = flow.flows(arcs) > 0
    chosen = np.full(rows, -1, dtype=np.int64)
    chosen[tails[taken]] = used[local[taken]]
    return chosen


def greedy(scorer: BatchScorer, k: int, order: Ints, free: Ints, chosen: Ints) -> None:
    """Mentees in `order` each take their best eligible mentor with a place left (updates in place).

    Candidate lists are searched for REFRESH mentees at a time and again, against the mentors still
    free, when a mentee finds every mentor of a full-length list taken.
    """
    start, i = 0, 0
    lists: list[list[int]] = []
    complete: list[bool] = []
    while i < len(order):
        if i - start >= len(lists):
            start = i
            found = scorer.top_k(k, order[i : i + REFRESH], free)
            lists, complete = found.mentors.tolist(), found.complete.tolist()
        row = i - start
        mentor = next((j for j in lists[row] if j >= 0 and free[j] > 0), -1)
        if mentor < 0 and not complete[row] and start != i:
            lists = []  # every listed mentor is taken since the search: search again from here
            continue
        if mentor >= 0:
            chosen[order[i]] = mentor
            free[mentor] -= 1
        i += 1


def commit(pool: MentorPool, scorer: BatchScorer, chosen: Ints) -> Assignment:
    """The chosen pairs as (mentee, candidate), in mentee order, with their places taken in the pool."""
    rows = np.flatnonzero(chosen >= 0)
    candidates = scorer.candidates(rows, chosen[rows])
    for candidate in candidates:
        pool.take_slot(candidate.mentor.person_id)
    return [(scorer.mentees[i], c) for i, c in zip(rows.tolist(), candidates, strict=True)]
