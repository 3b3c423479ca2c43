"""Criteria weights learned from a program's outcomes (`learning: on`).

Every proposal keeps each criterion's value when it was made. Once its fate is known it is an
outcome, a success or not (`succeeded`); a logistic regression (scikit-learn) then says how much
each criterion's value raises the odds of success. Its coefficients, negative ones read as 0 and
scaled to sum to 1, are what the outcomes say (`learned`); the weights in force are those within
the program's bounds. Hard rules are masks applied before any score: no weight can trade them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from services.matching.domain.config import CRITERIA, LearnedWeights, ProgramConfig

LOW_RATING = 2  # a closing rating at or below this (out of 5) from the mentee is a failure
REGULARISATION = 1.0  # scikit-learn's C: the inverse strength of the L2 penalty


@dataclass(frozen=True)
class Outcome:
    """A proposal whose fate is known: the criteria's values when proposed, and the verdict."""

    values: Mapping[str, float]
    success: bool


def succeeded(status: str, end_reason: str | None, mentee_rating: int | None) -> bool | None:
    """A match's verdict from what is known of it (None: not an outcome, or not yet):
    - declined or expired: a failure (the pair did not want each other);
    - a relationship ended early as `not_a_fit`, or rated 2 or less by the mentee at its close:
      a failure;
    - any other relationship (running, completed, ended early for another reason): a success;
    - open proposals and cancellations (someone left the program): not outcomes."""
    if status in ("declined", "expired"):
        return False
    if status not in ("confirmed", "completed", "ended_early"):
        return None
    if end_reason == "not_a_fit":
        return False
    return not (mentee_rating is not None and mentee_rating <= LOW_RATING)


def learn(outcomes: Sequence[Outcome], config: ProgramConfig) -> LearnedWeights | None:
    """The weights the outcomes teach, within the program's bounds; None while they cannot say
    anything (no outcome, or all of one kind)."""
    labels = np.array([o.success for o in outcomes], dtype=bool)
    if len(labels) == 0 or labels.all() or not labels.any():
        return None
    from sklearn.linear_model import LogisticRegression  # loaded only where learning runs

    values = np.array([[o.values.get(c, 0.0) for c in CRITERIA] for o in outcomes], dtype=float)
    model = LogisticRegression(C=REGULARISATION, max_iter=1000)
    model.fit(values, labels)
    coefficients = np.maximum(model.coef_[0], 0.0)
    total = float(coefficients.sum())
    if total <= 0:
        return None
    learned = {c: float(v) / total for c, v in zip(CRITERIA, coefficients, strict=True)}
    weights = {c: _within(learned[c], *config.bounds(c)) for c in CRITERIA}
    return LearnedWeights(
        weights={c: round(w, 6) for c, w in weights.items()},
        learned={c: round(w, 6) for c, w in learned.items()},
        outcomes=len(outcomes),
        in_force=len(outcomes) >= config.learning_min_outcomes,
    )


def _within(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)
