"""A program's matching configuration: defaults until a `program-configured` event arrives."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, get_args

from services.matching.domain.topics import DEFAULT as DEFAULT_TAXONOMY
from services.matching.domain.topics import Taxonomy
from shared.contract.events import Criterion, ProgramConfigured, ProgramRules, WeightBounds

CRITERIA: tuple[str, ...] = get_args(Criterion)  # the contract names them, in scoring order

# Topic fit dominates: the mentee's goals are why they joined. Reputation next: it is learned.
# Mutual learning is a bonus: most people say nothing of what they would learn or share.
DEFAULT_WEIGHTS: dict[str, float] = {
    "topic_fit": 0.40,
    "languages": 0.10,
    "timezone": 0.10,
    "seniority": 0.10,
    "department": 0.05,
    "reputation": 0.15,
    "load": 0.10,
    "mutual_learning": 0.05,
}


@dataclass(frozen=True)
class LearnedWeights:
    """What a program's outcomes taught (see `learning`): the weights in force, within the
    program's bounds, what the model said before the bounds, and how many outcomes it read."""

    weights: dict[str, float]
    learned: dict[str, float]
    outcomes: int
    in_force: bool  # False until the program's learning_min_outcomes are reached


DEFAULT_CHECKIN_DAYS = (30.0, 90.0)  # after 30 days, then 60 days later (Mentorloop's rhythm)


@dataclass(frozen=True)
class ProgramConfig:
    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    rules: ProgramRules = field(default_factory=ProgramRules)
    response_deadline_hours: float = 72.0
    mode: str = "continuous"
    candidates: int = 20
    relationship_length_days: float = 180.0
    checkin_days: tuple[float, ...] = DEFAULT_CHECKIN_DAYS
    stall_after_days: float = 21.0
    taxonomy: Taxonomy = DEFAULT_TAXONOMY
    learning: str = "off"
    weight_bounds: dict[str, WeightBounds] = field(default_factory=dict)
    learning_min_outcomes: int = 200
    learned: LearnedWeights | None = None  # read with the configuration (repository)

    @classmethod
    def of(cls, configured: ProgramConfigured) -> ProgramConfig:
        """Weights not named keep their default; all are then normalised to sum to 1."""
        weights = dict(DEFAULT_WEIGHTS)
        for criterion, weight in configured.weights.items():
            weights[criterion] = weight
        return cls(
            weights=weights,
            rules=configured.rules,
            response_deadline_hours=configured.response_deadline_hours,
            mode=configured.mode,
            candidates=configured.candidates,
            relationship_length_days=configured.relationship_length_days,
            checkin_days=tuple(
                configured.checkin_days
                if configured.checkin_days is not None
                else (d for d in DEFAULT_CHECKIN_DAYS if d < configured.relationship_length_days)
            ),
            stall_after_days=configured.stall_after_days,
            taxonomy=DEFAULT_TAXONOMY.extended(configured.topics),
            learning=configured.learning,
            weight_bounds={str(c): b for c, b in configured.weight_bounds.items()},
            learning_min_outcomes=configured.learning_min_outcomes,
        )

    @classmethod
    def from_json(cls, raw: dict[str, Any] | None) -> ProgramConfig:
        return cls() if raw is None else cls.of(ProgramConfigured.model_validate(raw))

    def with_learned(self, learned: LearnedWeights | None) -> ProgramConfig:
        return replace(self, learned=learned)

    def bounds(self, criterion: str) -> tuple[float, float]:
        """The least and most a learned weight may be (as written, before scaling to 1)."""
        bounds = self.weight_bounds.get(criterion) or WeightBounds()
        return bounds.min, bounds.max

    @property
    def learns(self) -> bool:
        """Learned weights are in force: learning is on and enough outcomes were read."""
        return self.learning == "on" and self.learned is not None and self.learned.in_force

    def weights_in_force(self) -> dict[str, float]:
        """The learned weights when they are in force, else the program's own."""
        return dict(self.learned.weights) if self.learns and self.learned else dict(self.weights)

    def normalised_weights(self) -> dict[str, float]:
        weights = self.weights_in_force()
        total = sum(weights.get(c, 0.0) for c in CRITERIA)
        if total <= 0:
            total_default = sum(DEFAULT_WEIGHTS.values())
            return {c: DEFAULT_WEIGHTS[c] / total_default for c in CRITERIA}
        return {c: weights.get(c, 0.0) / total for c in CRITERIA}
