"""Candidate pairs for a whole cohort at once, searched block by block.

`criteria_values` and `eligible` score one mentee against the whole pool. A cohort needs every
waiting mentee, so here a block of mentees is scored against the pool with one float32 matrix
product, the hard rules become penalties or left-out columns, and only two kinds of pairs are
kept: each mentee's best k mentors, and each mentor's best l mentees (ranked by score less half
the mentee's own best score, so that mentees wanted everywhere do not fill every mentor's list).
No mentees x mentors matrix is ever held. The kept pairs are then scored again exactly, pair by
pair, with the functions of `criteria` that `criteria_values` and `eligible` use, on the very
same floats: coverage and wants rows come from `MentorPool.coverage` and `MentorPool.wants`.

The product's features, mentee side x mentor side:
  goal weight / total per distinct goal  x  topic_fit weight x the mentor's coverage of the goal
  1 / offer count per distinct offer     x  mutual_learning weight x the mentor's wish to learn it
  one-hot time zone offset               x  timezone weight x value, or a penalty past the limit
  one-hot seniority                      x  seniority weight x value, or a penalty under the gap
  one-hot department                     x  department weight x value, or a penalty against the rule
  1                                      x  languages + reputation + load for the language group
Mentees are grouped by the languages they speak; a group only sees the mentors sharing one of
them and having a free place. Goals and offers are distinct by taxonomy topic (two names of one
topic share a column); a goal no mentor covers has no column.

The hard rule `min_topic_fit` is a threshold on a sum, so it cannot be a term of the product. It is
applied lazily but exactly, row by row: a mentee's picks are checked with the exact topic fit;
when one fails, that mentee's whole row is swept once (its goal part of the product, recomputed
alone, marks every pair surely under the minimum) and the failing picks themselves are struck
out, then the row is picked again, until every pick passes. So a pair failing the rule is never
among a mentee's best k while an eligible mentor lies below it, and rows whose best mentors all
cover their goals (nearly all) cost nothing more. Mentees with no goal any mentor covers are not
searched at all. Pairs offered for the mentors' best mentees are checked exactly the same way.

Deferred acceptance (`cohort`) asks more of a search: pairs surely under their mentor's `bar`
are sunk, the pairs a mentee has proposed are left out, and `exact` lists also score every pair
within the product's error of the k-th pick, so that they follow `rank`'s order exactly, ties by
mentor id, wherever the float32 product cannot tell two pairs apart.

Blocks are scored on `workers` threads at once (numpy releases the GIL), so numpy's BLAS should
use one thread per process (OPENBLAS_NUM_THREADS=1 in the environment): with more, its threads and
ours fight for the cores.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

import numpy as np
from numpy.typing import NDArray

from services.matching.domain import criteria
from services.matching.domain.config import CRITERIA, ProgramConfig
from services.matching.domain.criteria import Bools, Floats, Ints, Values
from services.matching.domain.scoring import Candidate, Mentee, MentorPool

CHUNK = 32  # columns per chunk: a block's top k lies in the k chunks with the highest maxima
BLOCK_SCORES = 1 << 22  # float32 scores per block (16 MiB), so a block stays in the CPU's cache
FALLBACK = 16  # above this many pairs per kept one, a block's best mentees are partitioned out
ROW_CHUNK = 64  # rows per chunk when looking for each mentor's best mentees in a block
COMPACT_AT = 1 << 20  # pairs kept for the mentors' best mentees before trimming them
# a valid pair's float32 product is within TOLERANCE x the scores' span of its exact score (a
# dozen nonzero terms, each rounded to ~6e-8 of itself: ~2e-6), and its goal part within
# FIT_TOLERANCE of the exact topic fit; only pairs missing a bar by more are dropped on its word
TOLERANCE = 1e-5
FIT_TOLERANCE = 1e-5
RAMP = 2.0  # a pair missing its bar by the tolerance loses RAMP penalties (see `_under_bar`)

REGRET = 0.5  # a mentor's best mentees: score - REGRET x the mentee's own best score


@dataclass(frozen=True)
class TopK:
    """Each mentee's best eligible mentors, best first, ties by mentor id; -1 and -inf pad a row."""

    mentors: Ints  # (mentees, k) rows of pool.mentors
    scores: Floats  # (mentees, k) exact scores
    complete: Bools  # (mentees,) the row holds every eligible mentor


@dataclass(frozen=True)
class Shortlist:
    """One search: each mentee's best k mentors, and each mentor's best `per_mentor` mentees."""

    best_mentors: TopK  # rows follow the searched mentees
    mentee_rows: Ints  # pairs (mentee_rows[i], mentor_rows[i]) at exact score scores[i]
    mentor_rows: Ints
    scores: Floats


@dataclass(frozen=True)
class _Group:
    """Mentees speaking the same languages: the mentors they may get and that side of the product."""

    cols: Ints  # mentor rows
    column_of: Ints  # mentor row -> column, -1 when not in the group
    features: NDArray[np.float32]  # (features, width), padded with hopeless columns
    coverage: NDArray[np.float32]  # (goal columns, width): each mentor's coverage, for sweeps
    width: int


@dataclass(frozen=True)
class _Search:
    """What every block of one search shares."""

    rows_all: Ints  # the searched mentees
    k: int
    best_mentees: _BestMentees
    free: Ints
    found: TopK
    bar: Floats | None  # per mentor: pairs scoring under it are of no use to the caller
    exclude: Ints  # sorted keys mentee row x mentors + mentor row never to pick (beside forbidden)
    exact: bool  # lists exactly in `rank`'s order, ties by mentor id (near ties scored too)


class BatchScorer:
    """A cohort's mentees against a pool: exact per-pair criteria and a blocked top-k search.

    Loads are read once, when the scorer is made: the `load` criterion and `Candidate.load` keep
    that value, and which mentors still have a place is the `free` array passed to `top_k`.
    Searches score blocks on `workers` threads.
    """

    def __init__(
        self,
        pool: MentorPool,
        mentees: Sequence[Mentee],
        config: ProgramConfig,
        excluded: Mapping[str, set[str]] | None = None,
        workers: int = 1,
    ) -> None:
        self.pool, self.mentees, self.config = pool, list(mentees), config
        self.workers = workers
        self.weights = config.normalised_weights()
        self.minimum = config.rules.min_topic_fit
        n, m = len(self.mentees), len(pool)
        self.load = pool.load.copy()
        self.free = np.maximum(pool.capacity - pool.load, 0)
        self.load_value = criteria.load(self.load, pool.capacity)
        self.id_rank = np.empty(m, dtype=np.int64)
        self.id_rank[sorted(range(m), key=lambda j: pool.mentors[j].person_id)] = np.arange(m)

        taxonomy = config.taxonomy
        # each distinct goal's coverage, each distinct offer's wants: the rows criteria_values reads
        self.coverage, self.goal_row, self.goal_weight = _distinct(
            (
                (i, topic, criteria.goal_weight(p))
                for i, me in enumerate(self.mentees)
                for topic, p in me.goals
            ),
            n,
            partial(pool.coverage, taxonomy=taxonomy),
            taxonomy.key,
            m,
        )
        self.goal_total = criteria.total_weight(self.goal_weight.sum(axis=1))
        self.wanted, self.offer_row, _ = _distinct(
            ((i, offer, 1) for i, me in enumerate(self.mentees) for offer in me.offers),
            n,
            partial(pool.wants, taxonomy=taxonomy),
            taxonomy.key,
            m,
        )
        self.offer_count = np.array(
            [criteria.offer_count(me.offers) for me in self.mentees], dtype=np.int64
        )
        # with the rule on, a mentee whose goals no mentor covers has no eligible mentor at all
        uncovered = (self.goal_row == len(self.coverage) - 1).all(axis=1)
        self.hopeless = uncovered if self.minimum > 0 else np.zeros(n, dtype=bool)

        codes = {c: i for i, c in enumerate(sorted(pool.languages))}
        self.mentor_languages = np.array([pool.languages[c] for c in codes], dtype=float)
        self.mentor_languages = self.mentor_languages.reshape(len(codes), m)
        spoken: dict[tuple[str, ...], int] = {}  # each distinct language list -> its row
        spoken_by = np.array(
            [spoken.setdefault(me.languages, len(spoken)) for me in self.mentees], dtype=np.int64
        )
        counts = np.zeros((len(spoken), len(codes) + 1))  # codes spoken, then how many in all
        for row, languages in enumerate(spoken):
            for code in languages:
                if code in codes:
                    counts[row, codes[code]] += 1
            counts[row, -1] = criteria.spoken_count(languages)
        self.mentee_languages = counts[spoken_by, :-1]
        self.language_count = counts[spoken_by, -1].astype(np.int64)
        _, group_of = np.unique(counts, axis=0, return_inverse=True)
        self.language_group = group_of.reshape(-1)[spoken_by]

        zones = {me.timezone for me in self.mentees}
        offsets = {tz: criteria.utc_offset_hours(tz, pool.now) for tz in zones}
        self.offset = np.array([offsets[me.timezone] for me in self.mentees], dtype=float)
        self.seniority = np.array(
            [np.nan if me.seniority is None else me.seniority for me in self.mentees], dtype=float
        )
        self.mentee_department = np.array(
            [pool.department_of(me.department) for me in self.mentees], dtype=np.int64
        )

        forbidden = sorted(
            {
                i * m + pool.index[person]
                for i, me in enumerate(self.mentees)
                for person in (me.person_id, me.manager_id, *(excluded or {}).get(me.person_id, ()))
                if person is not None and person in pool.index
            }
        )
        self.forbidden = np.array(forbidden, dtype=np.int64)

        negative = sum(min(w, 0.0) for w in self.weights.values())
        positive = sum(max(w, 0.0) for w in self.weights.values())
        span = positive - negative + 1
        self.lowest, self.highest = negative, positive  # every eligible pair scores in between
        self.penalty = 4 * span  # one broken rule sinks a pair below any eligible one
        self.threshold = negative - span  # float32 scores above this are eligible
        self.tolerance = TOLERANCE * span
        self._build_features()

    # --- exact scores, pair by pair --------------------------------------------------------------

    def values(self, rows: Ints, cols: Ints) -> Values:
        """`criteria_values` for mentee rows x mentor cols (broadcast): the same functions."""
        pool = self.pool
        shape = np.broadcast_shapes(rows.shape, cols.shape)
        wanted = (
            self.wanted[self.offer_row[rows, o], cols] for o in range(self.offer_row.shape[1])
        )
        shared = (self.mentee_languages[rows] * self.mentor_languages.T[cols]).sum(-1)
        shared = np.broadcast_to(shared, shape) if shared.shape != shape else shared
        gap = criteria.gap_hours(pool.utc_offset[cols], self.offset[rows])
        seniority_gap = pool.seniority[cols] - self.seniority[rows]
        mentee_department = self.mentee_department[rows]
        mentor_department = pool.department_code[cols]
        department = criteria.department(
            mentee_department, mentor_department, self.config.rules.department == "same"
        )
        return Values(
            topic_fit=self.topic_fit(rows, cols),
            languages=criteria.languages(shared, self.language_count[rows]),
            timezone=np.broadcast_to(criteria.timezone(gap), shape),
            seniority=np.broadcast_to(criteria.seniority(seniority_gap), shape),
            department=np.broadcast_to(department, shape),
            reputation=np.broadcast_to(pool.reputation[cols], shape),
            load=np.broadcast_to(self.load_value[cols], shape),
            mutual_learning=criteria.mutual_learning(wanted, self.offer_count[rows], shape),
            shared_languages=shared,
            gap_hours=np.broadcast_to(gap, shape),
            seniority_gap=np.broadcast_to(seniority_gap, shape),
            mentee_department=np.broadcast_to(mentee_department, shape),
            mentor_department=np.broadcast_to(mentor_department, shape),
        )

    def topic_fit(self, rows: Ints, cols: Ints) -> Floats:
        """The `topic_fit` criterion alone, for mentee rows x mentor cols (broadcast)."""
        goals = (
            (self.goal_weight[rows, g], self.coverage[self.goal_row[rows, g], cols])
            for g in range(self.goal_row.shape[1])
        )
        shape = np.broadcast_shapes(rows.shape, cols.shape)
        return criteria.topic_fit(goals, self.goal_total[rows], shape)

    def eligible(self, rows: Ints, cols: Ints, values: Values, free: Ints) -> Bools:
        """`eligible` for the pairs, with `free` places per mentor instead of capacity - load."""
        ok = criteria.allowed(values, self.config.rules) & (free[cols] > 0)
        keys = rows * len(self.pool) + cols
        at = np.minimum(np.searchsorted(self.forbidden, keys), max(len(self.forbidden) - 1, 0))
        if len(self.forbidden):
            ok &= self.forbidden[at] != keys
        return np.asarray(ok)

    def candidates(self, rows: Ints, cols: Ints) -> list[Candidate]:
        """The `Candidate` of each pair (rows[i], cols[i]), as `rank` would have made it."""
        values = self.values(rows, cols)
        scores = values.score(self.weights)
        per_criterion = {c: values.of(c).tolist() for c in CRITERIA}
        return [
            Candidate(
                self.pool.mentors[j],
                s,
                {c: per_criterion[c][i] for c in CRITERIA},
                int(self.load[j]),
            )
            for i, (j, s) in enumerate(zip(cols.tolist(), scores.tolist(), strict=True))
        ]

    # --- blocked top-k search --------------------------------------------------------------------

    def top_k(
        self,
        k: int,
        mentees: Ints | None = None,
        free: Ints | None = None,
        bar: Floats | None = None,
        exclude: Ints | None = None,
        exact: bool = False,
    ) -> TopK:
        """The best k eligible mentors of each mentee (rows of `mentees`, default all of them)."""
        return self.search(k, 0, mentees, free, bar, exclude, exact).best_mentors

    def search(
        self,
        k: int,
        per_mentor: int,
        mentees: Ints | None = None,
        free: Ints | None = None,
        bar: Floats | None = None,
        exclude: Ints | None = None,
        exact: bool = False,
    ) -> Shortlist:
        """Each mentee's best k eligible mentors and each mentor's best `per_mentor` mentees.

        `mentees` are rows of the scorer's mentees (default: all); `free` the places per mentor.
        For deferred acceptance: mentors are left out where the pair's score is surely under
        `bar` (per mentor), and so are the pairs of `exclude` (sorted keys mentee row x pool
        size + mentor row); `complete` then means every other eligible mentor is listed.
        The float32 product may misorder pairs closer than its error at the k-th place; `exact`
        lists are exactly the best k by exact score, ties by mentor id, at the cost of scoring
        those near ties too.
        """
        rows_all = np.arange(len(self.mentees)) if mentees is None else np.asarray(mentees)
        free = self.free if free is None else free
        found = TopK(
            np.full((len(rows_all), k), -1, dtype=np.int64),
            np.full((len(rows_all), k), -np.inf),
            self.hopeless[rows_all].copy(),
        )
        best_mentees = _BestMentees(
            per_mentor, len(self.pool), self.threshold - REGRET * self.highest
        )
        none = np.zeros(0, dtype=np.int64)
        search = _Search(
            rows_all, k, best_mentees, free, found, bar, none if exclude is None else exclude, exact
        )
        searched = np.flatnonzero(~found.complete)  # not the hopeless
        groups = self.language_group[rows_all[searched]]
        by_group = np.argsort(groups, kind="stable")
        order = searched[by_group]
        bounds = np.flatnonzero(np.diff(groups[by_group])) + 1
        with ThreadPoolExecutor(self.workers) as workers:
            for positions in np.split(order, bounds) if len(order) else []:
                group = self._group(rows_all[positions[0]], free)
                if group is None:
                    found.complete[positions] = True
                    continue
                block = max(ROW_CHUNK, BLOCK_SCORES // group.width // ROW_CHUNK * ROW_CHUNK)
                blocks = [positions[s : s + block] for s in range(0, len(positions), block)]
                for pairs in workers.map(partial(self._block, group, search), blocks):
                    best_mentees.add(*pairs)
        rows, cols, _ = best_mentees.pairs()
        values = self.values(rows, cols)
        ok = self.eligible(rows, cols, values, free)
        return Shortlist(found, rows[ok], cols[ok], values.score(self.weights)[ok])

    def _group(self, first: int, free: Ints) -> _Group | None:
        """The mentors mentees speaking `first`'s languages may get, and their side of the product."""
        shared = self.mentee_languages[first] @ self.mentor_languages
        cols = np.flatnonzero((shared > 0) & (free > 0))
        if not len(cols):
            return None
        w = self.weights
        group_value = (
            w["languages"] * (shared / self.language_count[first])
            + w["reputation"] * self.pool.reputation
            + w["load"] * self.load_value
        )
        width = -(-len(cols) // CHUNK) * CHUNK
        features = np.zeros((self.mentor_features.shape[0] + 1, width), dtype=np.float32)
        features[:-1, : len(cols)] = self.mentor_features[:, cols]
        features[-1, : len(cols)] = group_value[cols]
        features[-1, len(cols) :] = -2 * self.penalty
        goals = self.goal_columns if self.minimum > 0 else 0  # only sweeps read it
        coverage = np.zeros((goals, width), dtype=np.float32)
        coverage[:, : len(cols)] = self.coverage[:goals, cols]
        column_of = np.full(len(self.pool), -1, dtype=np.int64)
        column_of[cols] = np.arange(len(cols))
        return _Group(cols, column_of, features, coverage, width)

    def _block(
        self, group: _Group, search: _Search, at: Ints
    ) -> tuple[Ints, Ints, NDArray[np.float32]]:
        """One block of mentees: their best k mentors into `search.found`; returned, pairs that
        may be among the mentors' best mentees."""
        cols, rows, found, k = group.cols, search.rows_all[at], search.found, search.k
        scores = self.mentee_features[rows] @ group.features
        self._strike(scores, rows, group.column_of, self.forbidden)
        self._strike(scores, rows, group.column_of, search.exclude)
        if search.bar is not None:
            self._under_bar(scores, search.bar[cols])
        picked, approx, chunk_max = self._pick(group, rows, scores, k)
        valid = approx > self.threshold
        if search.exact:
            self._exact_lists(group, search, at, scores, chunk_max, picked, approx)
        else:
            mentors = np.where(valid, cols[np.minimum(picked, len(cols) - 1)], 0)
            values = self.values(rows[:, None], mentors)
            ok = valid & self.eligible(rows[:, None], mentors, values, search.free)
            exact = np.where(ok, values.score(self.weights), -np.inf)
            best = np.lexsort((self.id_rank[mentors], -exact), axis=-1)
            listed = np.take_along_axis(np.where(ok, mentors, -1), best, 1)
            found.mentors[at, : best.shape[1]] = listed
            found.scores[at, : best.shape[1]] = np.take_along_axis(exact, best, 1)
        found.complete[at] = (group.width <= k) | (valid.sum(axis=1) < k)
        best_mentees = search.best_mentees
        if not best_mentees.size:
            return _NO_PAIRS
        # a mentor's best mentees are those losing least against their own best mentor
        best_score = approx.max(axis=1, initial=-np.inf)
        scores -= REGRET * np.where(best_score > self.threshold, best_score, np.inf)[:, None]
        bar = np.full(group.width, np.inf, dtype=np.float32)
        bar[: len(cols)] = best_mentees.bar[cols]
        local_rows, local_cols, approx = _above(scores, bar, best_mentees.size)
        if self.minimum > 0:  # rows never swept may offer pairs under the minimum: not those
            fits = criteria.fits_topics(
                self.topic_fit(rows[local_rows], cols[local_cols]), self.minimum
            )
            local_rows, local_cols, approx = local_rows[fits], local_cols[fits], approx[fits]
        return rows[local_rows], cols[local_cols], approx

    def _under_bar(self, scores: NDArray[np.float32], bar: Floats) -> None:
        """Sink the pairs scoring more than the tolerance under their mentor's `bar` (-inf: none):
        s + RAMP x min(s - bar, 0), in four passes without a mask (masks are slow on random
        data); those within it keep a lower valid score, and their exact one decides."""
        width = scores.shape[1]
        finite = np.full(width, self.threshold - self.penalty, dtype=np.float32)  # no inf - inf
        finite[: len(bar)] = np.maximum(bar - self.tolerance, self.threshold - self.penalty)
        drop = scores - finite
        np.minimum(drop, 0, out=drop)
        drop *= np.float32(RAMP * self.penalty / self.tolerance)
        scores += drop

    def _exact_lists(
        self,
        group: _Group,
        search: _Search,
        at: Ints,
        scores: NDArray[np.float32],
        chunk_max: NDArray[np.float32],
        picked: Ints,
        approx: NDArray[np.float32],
    ) -> None:
        """Rows `at` of `search.found`: the picks and every pair of the block within twice the
        product's error of a row's k-th pick, scored exactly, the k best kept (ties by mentor id)."""
        k, rows, cols = search.k, search.rows_all[at], group.cols
        valid = approx > self.threshold
        full = valid.sum(axis=1) >= k  # others hold every valid column already
        lowest = approx.min(axis=1, initial=np.inf) - 2 * self.tolerance
        floor = np.where(full, lowest, np.inf).astype(np.float32)
        # near pairs lie in the chunks whose maximum reaches the floor (see `_select`)
        chunks = chunk_max.shape[1]
        hit_row, hit_chunk = np.nonzero(chunk_max >= floor[:, None])
        columns = hit_chunk[:, None] + np.arange(CHUNK) * chunks
        near = scores[hit_row[:, None], columns] >= floor[hit_row, None]
        near_row, near_col = np.broadcast_to(hit_row[:, None], near.shape)[near], columns[near]
        pick_row, slot = np.nonzero(valid & ~full[:, None])
        local = np.concatenate([near_row, pick_row])
        mentors = cols[np.concatenate([near_col, picked[pick_row, slot]])]
        values = self.values(rows[local], mentors)
        ok = self.eligible(rows[local], mentors, values, search.free)
        exact = np.where(ok, values.score(self.weights), -np.inf)
        order = np.lexsort((self.id_rank[mentors], -exact, local))
        local, mentors, exact, ok = local[order], mentors[order], exact[order], ok[order]
        place = np.arange(len(local)) - np.searchsorted(local, local)  # within its row
        keep = ok & (place < k)
        search.found.mentors[at[local[keep]], place[keep]] = mentors[keep]
        search.found.scores[at[local[keep]], place[keep]] = exact[keep]

    def _pick(
        self, group: _Group, rows: Ints, scores: NDArray[np.float32], k: int
    ) -> tuple[Ints, NDArray[np.float32], NDArray[np.float32]]:
        """Each row's k best columns by the product, none under `min_topic_fit` (see the module
        docstring): rows whose picks fail it are swept, the failing picks struck, and picked again.
        With their scores and the chunks' maxima (see `_select`) after all that."""
        chunk_max = scores.reshape(len(rows), CHUNK, group.width // CHUNK).max(axis=1)
        picked, approx = _select(scores, chunk_max, k)
        if self.minimum <= 0:
            return picked, approx, chunk_max
        swept = np.zeros(len(rows), dtype=bool)
        todo = np.arange(len(rows))
        while len(todo):
            mentors = group.cols[np.minimum(picked[todo], len(group.cols) - 1)]
            fit = self.topic_fit(rows[todo, None], mentors)
            failing = (approx[todo] > self.threshold) & ~criteria.fits_topics(fit, self.minimum)
            hit = failing.any(axis=1)
            todo, failing = todo[hit], failing[hit]
            if not len(todo):
                break
            fresh = todo[~swept[todo]]
            if len(fresh):
                self._sweep(group, rows, scores, fresh)
                swept[fresh] = True
            row, slot = np.nonzero(failing)  # near the minimum: the sweep could not tell
            scores[todo[row], picked[todo[row], slot]] = -np.inf
            again = scores[todo]
            chunk_max[todo] = again.reshape(len(todo), CHUNK, group.width // CHUNK).max(axis=1)
            picked[todo], approx[todo] = _select(again, chunk_max[todo], k)
        return picked, approx, chunk_max

    def _sweep(self, group: _Group, rows: Ints, scores: NDArray[np.float32], at: Ints) -> None:
        """Sink, in rows `at` of the block, every pair whose topic fit is surely under the minimum:
        the goal part of the product alone, in float32 (a fit of 0 is exactly 0 there)."""
        fit = self.mentee_features[rows[at], : self.goal_columns] @ group.coverage
        under = (fit <= 0) | (fit < self.minimum - FIT_TOLERANCE)
        scores[at] -= np.float32(self.penalty) * under

    def _strike(self, scores: NDArray[np.float32], rows: Ints, column_of: Ints, keys: Ints) -> None:
        """The pairs of these mentees among `keys` (sorted mentee row x pool size + mentor row:
        self, own manager, excluded, or a caller's) can never be picked."""
        m = len(self.pool)
        starts = np.searchsorted(keys, rows * m)
        counts = np.searchsorted(keys, (rows + 1) * m) - starts
        if not counts.any():
            return
        local = np.repeat(np.arange(len(rows)), counts)
        flat = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts - starts, counts)
        column = column_of[keys[flat] % m]
        keep = column >= 0
        scores[local[keep], column[keep]] = -np.inf

    def _build_features(self) -> None:
        """The float32 feature matrices of the product (see the module docstring)."""
        pool, rules, w, n = self.pool, self.config.rules, self.weights, len(self.mentees)
        goal_share = _shares(
            self.goal_row, self.goal_weight / self.goal_total[:, None], len(self.coverage) - 1
        )
        offer_share = _shares(
            self.offer_row,
            np.broadcast_to(1 / self.offer_count[:, None], self.offer_row.shape),
            len(self.wanted) - 1,
        )
        self.goal_columns = goal_share.shape[1]
        mentor_parts = [
            w["topic_fit"] * self.coverage[:-1],
            w["mutual_learning"] * self.wanted[:-1],
        ]
        categories = []  # (category of each mentee, how many categories) per one-hot part

        zones, zone_of = np.unique(self.offset, return_inverse=True)
        gap_hours = criteria.gap_hours(pool.utc_offset[None, :], zones[:, None])
        zone_rows = w["timezone"] * criteria.timezone(gap_hours)
        if rules.max_timezone_difference_hours is not None:
            limit = rules.max_timezone_difference_hours
            zone_rows -= self.penalty * ~criteria.within_timezone_limit(gap_hours, limit)
        mentor_parts.append(zone_rows)
        categories.append((zone_of.reshape(n), len(zones)))

        known = ~np.isnan(self.seniority)
        levels, level_of = np.unique(self.seniority[known], return_inverse=True)
        levels = np.append(levels, np.nan)  # the last level: seniority not known
        seniority_of = np.full(n, len(levels) - 1)
        seniority_of[known] = level_of.reshape(-1)
        gap = pool.seniority[None, :] - levels[:, None]
        level_rows = w["seniority"] * criteria.seniority(gap)
        if rules.min_seniority_gap is not None:
            level_rows -= self.penalty * ~criteria.senior_enough(gap, rules.min_seniority_gap)
        mentor_parts.append(level_rows)
        categories.append((seniority_of, len(levels)))

        departments, department_of = np.unique(self.mentee_department, return_inverse=True)
        mentee_department, mentor_department = departments[:, None], pool.department_code[None, :]
        department_rows = w["department"] * criteria.department(
            mentee_department, mentor_department, rules.department == "same"
        )
        if rules.department != "any":
            allowed = criteria.department_allowed(
                mentee_department, mentor_department, rules.department
            )
            department_rows -= self.penalty * ~allowed
        mentor_parts.append(department_rows)
        categories.append((department_of.reshape(n), len(departments)))

        shares = np.hstack([goal_share, offer_share])
        width = shares.shape[1] + sum(count for _, count in categories) + 1
        self.mentee_features = np.zeros((n, width), dtype=np.float32)
        self.mentee_features[:, : shares.shape[1]] = shares
        start = shares.shape[1]
        for category, count in categories:
            self.mentee_features[np.arange(n), start + category] = 1.0
            start += count
        self.mentee_features[:, -1] = 1.0  # times the group's row: languages, reputation, load
        self.mentor_features = np.vstack(mentor_parts).astype(np.float32)


def _distinct(
    items: Iterable[tuple[int, str, int]],
    mentees: int,
    row_of: Callable[[str], Floats],
    key: Callable[[str], str],
    mentors: int,
) -> tuple[Floats, Ints, Ints]:
    """A table of per-mentor rows, one per distinct topic (by taxonomy `key`) that some mentor has
    a value for, then a row of zeros; and, from (mentee row, topic as typed, weight) items in
    mentee order, each mentee's topics as rows of it and their weights, padded with the zero row
    and weight 0. Rows are `row_of(name)` for the first name of each topic: the very floats
    `criteria_values` reads. (Flat lists, not one per mentee: fewer objects for the collector.)"""
    rows: list[Floats] = []
    by_key: dict[str, int] = {}
    by_name: dict[str, int] = {}
    mentee, found, weights = [], [], []
    for i, name, weight in items:
        row = by_name.get(name)
        if row is None:
            topic = key(name)
            row = by_key.get(topic)
            if row is None:
                value = row_of(name)
                row = by_key[topic] = len(rows) if value.any() else -1
                if row >= 0:
                    rows.append(value)
            by_name[name] = row
        mentee.append(i)
        found.append(row)
        weights.append(weight)
    flat = np.array(mentee, dtype=np.int64)
    starts = np.searchsorted(flat, np.arange(mentees))
    position = np.arange(len(flat)) - starts[flat]  # the topic's place among its mentee's
    width = int(position.max()) + 1 if len(flat) else 0
    table = np.vstack([*rows, np.zeros(mentors)])
    index = np.full((mentees, width), len(rows), dtype=np.int64)
    index[flat, position] = np.where(np.array(found, dtype=np.int64) < 0, len(rows), found)
    weighed = np.zeros((mentees, width), dtype=np.int64)
    weighed[flat, position] = weights
    return table, index, weighed


def _shares(index: Ints, share: Floats, columns: int) -> Floats:
    """Per mentee, the share each of the first `columns` table rows (not the last, zero, one)
    gets: summed over the mentee's topics pointing at it."""
    out = np.zeros((len(index), columns))
    used = index < columns
    np.add.at(out, (np.nonzero(used)[0], index[used]), share[used])
    return out


class _BestMentees:
    """Each mentor's best `size` mentees seen so far, and the score a new one must reach (`bar`).

    Blocks add pairs reaching the bar; when too many pile up they are trimmed to `size` per
    mentor and the bar rises to each mentor's size-th score.
    """

    def __init__(self, size: int, mentors: int, threshold: float) -> None:
        self.size = size
        self.bar = np.full(mentors, threshold, dtype=np.float32)
        self.parts: list[tuple[Ints, Ints, NDArray[np.float32]]] = []
        self.count = 0

    def add(self, rows: Ints, cols: Ints, scores: NDArray[np.float32]) -> None:
        if len(rows):
            self.parts.append((rows, cols, scores))
            self.count += len(rows)
            if self.count > max(COMPACT_AT, 2 * self.size * len(self.bar)):
                self._compact()

    def pairs(self) -> tuple[Ints, Ints, NDArray[np.float32]]:
        self._compact()
        return self.parts[0] if self.parts else _NO_PAIRS

    def _compact(self) -> None:
        if not self.parts:
            return
        rows, cols, scores = (np.concatenate(p) for p in zip(*self.parts, strict=True))
        # by mentor, then score, best first; a stable sort keeps earlier blocks first among ties
        order = np.argsort((cols << 32) | _descending(scores), kind="stable")
        rows, cols, scores = rows[order], cols[order], scores[order]
        starts = np.flatnonzero(np.r_[True, cols[1:] != cols[:-1]])
        rank = np.arange(len(cols)) - np.repeat(starts, np.diff(np.r_[starts, len(cols)]))
        keep = rank < self.size
        full = keep & (rank == self.size - 1)
        bar = self.bar.copy()  # a new array: blocks running now keep reading the old one
        bar[cols[full]] = scores[full]
        self.bar = bar
        self.parts = [(rows[keep], cols[keep], scores[keep])]
        self.count = int(keep.sum())


_NO_PAIRS = (
    np.zeros(0, dtype=np.int64),
    np.zeros(0, dtype=np.int64),
    np.zeros(0, dtype=np.float32),
)


def _above(
    scores: NDArray[np.float32], bar: NDArray[np.float32], size: int
) -> tuple[Ints, Ints, NDArray[np.float32]]:
    """(row, column, score) wherever a score reaches its column's bar; at most `size` a column
    when very many do (early on, while the bars are low).

    Rows are read ROW_CHUNK at a time: a chunk is only read in the columns its maximum clears.
    """
    rows, width = scores.shape
    if rows % ROW_CHUNK:
        pad = np.full((-rows % ROW_CHUNK, width), -np.inf, dtype=np.float32)
        scores = np.vstack([scores, pad])
    chunks = scores.reshape(-1, ROW_CHUNK, width)
    chunk, col = np.nonzero(chunks.max(axis=1) >= bar)
    if len(chunk) * ROW_CHUNK > FALLBACK * size * width and size < rows:
        by_mentor = np.ascontiguousarray(scores.T)  # rows: a multiple of ROW_CHUNK, so of CHUNK
        chunk_max = by_mentor.reshape(width, CHUNK, -1).max(axis=1)
        _, best = _select(by_mentor, chunk_max, size)
        level = np.maximum(best.min(axis=1), bar)  # ties at the size-th score all kept
        col, row = np.nonzero(by_mentor >= level[:, None])
        return row, col, by_mentor[col, row]
    values = chunks[chunk, :, col]  # (hits, ROW_CHUNK)
    keep = values >= bar[col][:, None]
    local = (chunk[:, None] * ROW_CHUNK + np.arange(ROW_CHUNK))[keep]
    return local, np.broadcast_to(col[:, None], keep.shape)[keep], values[keep]


def _descending(scores: NDArray[np.float32]) -> Ints:
    """Integers in the opposite order of the float32 scores (from their IEEE bits)."""
    bits = scores.view(np.int32).astype(np.int64)
    ascending = np.where(bits >= 0, bits + (1 << 31), -1 - bits)
    return (1 << 32) - 1 - ascending


def _select(
    scores: NDArray[np.float32], chunk_max: NDArray[np.float32], k: int
) -> tuple[Ints, NDArray[np.float32]]:
    """Each row's k highest columns (unordered) and their scores.

    Chunk c holds the columns c, c + n, c + 2n, ... (n chunks) and `chunk_max` their maximum per
    row: a row's k highest scores all lie in its k chunks with the highest maxima, so only
    k x CHUNK columns are partitioned.
    """
    rows, width = scores.shape
    k = min(k, width)
    chunks = width // CHUNK
    if chunks <= k:
        picked = np.argpartition(scores, width - k, axis=1)[:, width - k :]
        return picked, np.take_along_axis(scores, picked, 1)
    best = np.argpartition(chunk_max, chunks - k, axis=1)[:, chunks - k :]
    columns = (best[:, :, None] + np.arange(CHUNK) * chunks).reshape(rows, k * CHUNK)
    values = np.take_along_axis(scores, columns, 1)
    top = np.argpartition(values, k * CHUNK - k, axis=1)[:, k * CHUNK - k :]
    return np.take_along_axis(columns, top, 1), np.take_along_axis(values, top, 1)
