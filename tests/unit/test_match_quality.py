"""The match-quality benchmark, small: every figure is there, and no matcher breaks a rule."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks import match_quality
from services.matching.domain.config import CRITERIA

pytestmark = pytest.mark.unit

MATCHERS = ("random", "greedy_exact", "fixed", "new")
FIGURES = (
    "acceptance_rate",
    "early_end_rate",
    "win_win_rate",
    "mean_compatibility",
    "compatibility_vs_best",
    "time_to_match_days",
    "mentees_matched_share",
    "mentor_load_gini",
    "violations",
)


@pytest.fixture(scope="module")
def report() -> dict[str, object]:
    result = match_quality.run(mentors=60, mentees=180, months=3, seed=3)
    decoded: dict[str, object] = json.loads(json.dumps(result))  # what the benchmark prints
    return decoded


def test_every_matcher_has_every_figure_and_breaks_no_rule(report: dict) -> None:
    assert set(report["matchers"]) == set(MATCHERS)
    for name in MATCHERS:
        figures = report["matchers"][name]
        for figure in FIGURES:
            assert figure in figures, (name, figure)
        assert figures["proposals"] > 0, name
        assert 0 <= figures["acceptance_rate"] <= 1, name
        assert figures["violations"]["total"] == 0, (name, figures["violations"])
    assert report["targets"]["no_violations"] is True


def test_the_report_compares_the_new_matcher_and_says_what_it_learned(report: dict) -> None:
    assert isinstance(report["win_win_over_fixed"], float)
    assert isinstance(report["win_win_over_random"], float)
    assert set(report["hidden_importance"]) == set(CRITERIA)
    assert report["best_assignment"]["mean_compatibility"] > 0
    learning = report["learning"]
    assert learning["outcomes"] > 0 and -1 <= learning["spearman"] <= 1
    assert set(learning["learned"]) == set(CRITERIA)


def test_the_checker_counts_a_broken_rule() -> None:
    """Zero violations mean something: a pair without a shared language, proposed twice, counts."""
    pop = match_quality.population(mentors=30, mentees=60, months=1, seed=5)
    mentee, mentor = next(
        (i, j)
        for i, e in enumerate(pop.mentees)
        for j, m in enumerate(pop.mentors)
        if not set(e.languages) & set(m.languages)
    )
    checker = match_quality.Checker(pop, match_quality.RULES, match_quality.EXACT)
    checker.proposed(mentee, mentor, day=0)
    checker.released(mentee, mentor)
    checker.proposed(mentee, mentor, day=1)
    problems = checker.report()
    assert problems["language"] == 2 and problems["pair_again"] == 1
    assert problems["total"] >= 3


def test_the_population_is_seeded() -> None:
    one = match_quality.population(mentors=20, mentees=40, months=1, seed=9)
    two = match_quality.population(mentors=20, mentees=40, months=1, seed=9)
    assert one.mentees == two.mentees and one.mentors == two.mentors
    assert np.array_equal(one.truth.mentee_utility, two.truth.mentee_utility)
