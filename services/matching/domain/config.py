"""A program's matching configuration: defaults until a `program-configured` event arrives."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shared.contract.events import ProgramConfigured, ProgramRules

CRITERIA = ("topic_fit", "languages", "timezone", "seniority", "department", "reputation", "load")

# Topic fit dominates: the mentee's goals are why they joined. Reputation next: it is learned.
DEFAULT_WEIGHTS: dict[str, float] = {
    "topic_fit": 0.40,
    "languages": 0.10,
    "timezone": 0.10,
    "seniority": 0.10,
    "department": 0.05,
    "reputation": 0.15,
    "load": 0.10,
}


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
        )

    @classmethod
    def from_json(cls, raw: dict[str, Any] | None) -> ProgramConfig:
        return cls() if raw is None else cls.of(ProgramConfigured.model_validate(raw))

    def normalised_weights(self) -> dict[str, float]:
        total = sum(self.weights.get(c, 0.0) for c in CRITERIA)
        if total <= 0:
            return dict(DEFAULT_WEIGHTS)
        return {c: self.weights.get(c, 0.0) / total for c in CRITERIA}
