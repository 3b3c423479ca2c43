"""Weights learned from outcomes: the verdict of a match, what the model learns from synthetic
outcomes where one criterion drives success, the program's bounds, the outcomes needed, and the
learned weights changing a proposal without ever trading a hard rule."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from services.matching.domain.config import CRITERIA, ProgramConfig
from services.matching.domain.learning import Outcome, learn, succeeded
from services.matching.domain.scoring import Mentee, Mentor, MentorPool, rank
from shared.contract.events import ProgramConfigured

pytestmark = pytest.mark.unit

NOW = datetime(2026, 1, 15, 12, tzinfo=UTC)  # winter: Paris is UTC+1, Los Angeles UTC-8


def program(**settings: Any) -> ProgramConfig:
    return ProgramConfig.of(
        ProgramConfigured.model_validate({"program_id": "p", "learning": "on", **settings})
    )


def outcomes(count: int, driver: str = "timezone", seed: int = 7) -> list[Outcome]:
    """Random criteria values; success mostly when `driver` is high, whatever the others are."""
    rng = np.random.default_rng(seed)
    made = []
    for _ in range(count):
        values = {c: float(rng.uniform()) for c in CRITERIA}
        success = values[driver] + rng.normal(0, 0.1) > 0.5
        made.append(Outcome(values, bool(success)))
    return made


# --- the verdict ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "end_reason", "rating", "verdict"),
    [
        ("declined", None, None, False),
        ("expired", None, None, False),
        ("proposed", None, None, None),  # not known yet
        ("cancelled", None, None, None),  # someone left the program: says nothing of the pair
        ("confirmed", None, None, True),  # both accepted: running
        ("completed", None, None, True),
        ("completed", None, 4, True),
        ("completed", None, 3, True),
        ("completed", None, 2, False),  # the mentee's closing rating says it did not work
        ("ended_early", "not_a_fit", None, False),
        ("ended_early", "not_a_fit", 5, False),
        ("ended_early", "no_time", None, True),  # ended for another reason: the pair was fine
        ("ended_early", "goals_reached", 1, False),
    ],
)
def test_a_match_s_verdict(
    status: str, end_reason: str | None, rating: int | None, verdict: bool | None
) -> None:
    assert succeeded(status, end_reason, rating) is verdict


# --- learning -------------------------------------------------------------------------------------


@pytest.mark.parametrize("driver", ["timezone", "seniority", "topic_fit"])
def test_the_criterion_that_drives_success_gets_the_largest_weight(driver: str) -> None:
    learned = learn(outcomes(400, driver), program(learning_min_outcomes=100))
    assert learned is not None
    assert max(learned.learned, key=learned.learned.__getitem__) == driver
    assert learned.learned[driver] > 0.5
    assert sum(learned.learned.values()) == pytest.approx(1, abs=1e-5)
    assert learned.weights == learned.learned  # default bounds 0..1: nothing clipped
    assert (learned.outcomes, learned.in_force) == (400, True)


def test_the_bounds_clip_each_learned_weight() -> None:
    config = program(
        learning_min_outcomes=100,
        weight_bounds={"timezone": {"max": 0.3}, "load": {"min": 0.2, "max": 0.4}},
    )
    learned = learn(outcomes(400), config)
    assert learned is not None
    assert learned.learned["timezone"] > 0.3 and learned.weights["timezone"] == 0.3
    assert learned.learned["load"] < 0.2 and learned.weights["load"] == 0.2
    for criterion in CRITERIA:
        low, high = config.bounds(criterion)
        assert low <= learned.weights[criterion] <= high


def test_too_few_outcomes_are_learned_from_but_not_in_force() -> None:
    config = program(learning_min_outcomes=200)
    learned = learn(outcomes(150), config)
    assert learned is not None and (learned.outcomes, learned.in_force) == (150, False)
    taught = config.with_learned(learned)
    assert not taught.learns
    assert taught.weights_in_force() == config.weights  # the program's own still score


@pytest.mark.parametrize("success", [True, False])
def test_outcomes_all_of_one_kind_teach_nothing(success: bool) -> None:
    same = [Outcome(o.values, success) for o in outcomes(50)]
    assert learn(same, program(learning_min_outcomes=10)) is None
    assert learn([], program(learning_min_outcomes=10)) is None


def test_learned_weights_score_only_while_learning_is_on() -> None:
    learned = learn(outcomes(400), program(learning_min_outcomes=100))
    assert learned is not None
    on = program(learning_min_outcomes=100).with_learned(learned)
    assert on.learns and on.weights_in_force() == learned.weights
    off = program(learning="off", learning_min_outcomes=100).with_learned(learned)
    assert not off.learns and off.weights_in_force() == off.weights


# --- what it changes ------------------------------------------------------------------------------


def mentor(person: str, timezone: str, level: int, topic: str = "python") -> Mentor:
    return Mentor(person, ("en",), timezone, expertise=((topic, level),), capacity=20)


FAR = mentor("far", "America/Los_Angeles", 5)  # the best expert, nine hours away
NEAR = mentor("near", "Europe/Paris", 2)  # knows some python, in the mentee's time zone
ELSEWHERE = mentor("elsewhere", "Europe/Paris", 5, topic="cooking")  # covers no goal
MENTEE = Mentee("nina", ("en",), "Europe/Paris", goals=(("python", 1),))


def near_wins(config: ProgramConfig) -> list[Outcome]:
    """Mentees who declined far experts and accepted near mentors, as a program would see it."""
    pool = MentorPool([FAR, NEAR], NOW)
    values = {c.mentor.person_id: c.values for c in rank(pool, MENTEE, config)}
    return [Outcome(values["far"], False), Outcome(values["near"], True)] * 10


def test_outcomes_change_the_proposal_but_never_a_hard_rule() -> None:
    config = program(learning_min_outcomes=20, weight_bounds={"topic_fit": {"min": 0.1}})
    pool = MentorPool([FAR, NEAR, ELSEWHERE], NOW)
    assert [c.mentor.person_id for c in rank(pool, MENTEE, config)] == ["far", "near"]
    learned = learn(near_wins(config), config)
    assert learned is not None and learned.in_force
    assert max(learned.weights, key=learned.weights.__getitem__) == "timezone"
    assert learned.learned["topic_fit"] == 0 and learned.weights["topic_fit"] == 0.1
    ranked = rank(pool, MENTEE, config.with_learned(learned))
    # near first now; the mentor covering no goal stays out (min_topic_fit), however close
    assert [c.mentor.person_id for c in ranked] == ["near", "far"]
