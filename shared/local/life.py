"""The mentoring apps' side of the demo: people answer proposals, meet, sometimes part early, and
say how it went. Seeded, so the same demo plays the same life.

`Life.react` takes each event mentornet publishes about the tenant (proposals, confirmations,
feedback requests, endings) and returns what the people do about it, as app events to publish.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.local.simulation import Population, Record

APP_SOURCE = "app/simulator"
LIFE_TOPICS = ("match-proposed", "match-confirmed", "feedback-requested", "match-ended")
# A program lived in half a minute (days are fractional in the contract): a check-in after 10 s,
# a pair that has not met again by 25 s is stalled, and relationships complete at 30 s.
SECOND = 1 / 86400
DEMO_TIMINGS: dict[str, Any] = {
    "relationship_length_days": 30 * SECOND,
    "checkin_days": [10 * SECOND],
    "stall_after_days": 25 * SECOND,
}


@dataclass(frozen=True)
class LeftForYou:
    """The first proposal: its mentee accepts, its mentor is left to whoever runs the demo, who
    answers from the link in the proposal email (the demo prints it)."""

    match_id: str
    mentor_id: str
    event_id: str  # match-proposed's: the email's Message-ID derives from it


@dataclass
class Life:
    """What the people of one tenant do, and what remains open (see `settled`)."""

    population: Population
    goals: Mapping[str, list[str]]  # mentee -> goal topics, as registered
    seed: int = 7
    decline: float = 0.2  # share of proposals a mentor declines
    random: random.Random = field(init=False)
    proposed: set[str] = field(default_factory=set)
    confirmed: set[str] = field(default_factory=set)
    ended: dict[str, str] = field(default_factory=dict)  # match -> outcome
    asked: set[tuple[str, str, str]] = field(default_factory=set)  # (match, person, kind:n)
    parted_early: str | None = None  # the one relationship a mentee ends as not a fit
    for_you: LeftForYou | None = None  # see LeftForYou

    def __post_init__(self) -> None:
        self.random = random.Random(self.seed)

    def react(self, event: Mapping[str, Any]) -> list[Record]:
        data, kind = event["data"], event["type"]
        match_id = data["match_id"]
        if kind == "match-proposed" and match_id not in self.proposed:
            self.proposed.add(match_id)
            if self.for_you is None:
                self.for_you = LeftForYou(match_id, data["mentor_id"], event["id"])
                return [self._answer(match_id, data["mentee_id"], "accepted")]
            if self.random.random() < self.decline:
                return [self._answer(match_id, data["mentor_id"], "declined")]
            return [self._answer(match_id, who, "accepted") for who in _parties(data)]
        if kind == "match-confirmed" and match_id not in self.confirmed:
            self.confirmed.add(match_id)
            out = [self._session(match_id, n) for n in range(self.random.randint(1, 3))]
            if self.parted_early is None:  # the first pair finds it is not a fit
                self.parted_early = match_id
                out.append(self._app("relationship-ended", match_id, self._parting(data)))
            return out
        if kind == "feedback-requested":
            asked = (match_id, data["person_id"], f"{data['kind']}:{data.get('checkin')}")
            if asked not in self.asked:
                self.asked.add(asked)
                out = [self._app("feedback-given", match_id, self._feedback(data))]
                if (
                    data["kind"] == "checkin"
                    and data["role"] == "mentee"
                    and self.random.random() < 0.7
                ):
                    out.append(self._session(match_id, 10))  # most pairs meet again; others stall
                return out
        if kind == "match-ended":
            self.ended.setdefault(match_id, data["outcome"])
        return []

    def settled(self) -> bool:
        """Every proposal was answered, every relationship has ended and its closing feedback
        is given."""
        yours = {self.for_you.match_id} if self.for_you else set()
        answered = all(m in self.confirmed or m in self.ended for m in self.proposed - yours)
        closing = {m for m, _, kind in self.asked if kind.startswith("closing")}
        lived = self.confirmed - yours
        return answered and bool(lived) and lived <= closing

    def _answer(self, match_id: str, person: str, decision: str) -> Record:
        data = {"match_id": match_id, "person_id": person, "decision": decision}
        return self._app("match-responded", match_id, data)

    def _session(self, match_id: str, number: int) -> Record:
        data = {
            "match_id": match_id,
            "session_id": f"{match_id}-{number + 1}",
            "duration_minutes": self.random.choice([30, 45, 60]),
            "mentor_rating": self.random.randint(3, 5),
            "mentee_rating": self.random.randint(3, 5),
        }
        return self._app("session-completed", match_id, data)

    def _parting(self, match: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "match_id": match["match_id"],
            "ended_by": "mentee",
            "person_id": match["mentee_id"],
            "reason": "not_a_fit",
            "note": "Our schedules never lined up.",
        }

    def _feedback(self, asked: Mapping[str, Any]) -> dict[str, Any]:
        """Mostly happy people: a mentee reaches some goals, a mentor often learns something."""
        mentee = asked["role"] == "mentee"
        parted = asked["match_id"] == self.parted_early
        feedback: dict[str, Any] = {
            "match_id": asked["match_id"],
            "person_id": asked["person_id"],
            "kind": asked["kind"],
            "rating": 2 if parted else self.random.choice([3, 4, 4, 5, 5]),
            "learned": not parted and self.random.random() < (0.5 if mentee else 0.7),
        }
        if mentee and asked["kind"] == "closing":
            reached = ["no"] if parted else ["yes", "partly", "no"]
            feedback["goals"] = [
                {"topic": topic, "reached": self.random.choice(reached)}
                for topic in self.goals.get(asked["person_id"], [])
            ]
        return feedback

    def _app(self, type_: str, match_id: str, data: dict[str, Any]) -> Record:
        """An app event, dated now (the HR stream's clock runs five minutes behind)."""
        return self.population.event(
            type_, data, key=match_id, source=APP_SOURCE, at=datetime.now(UTC)
        )


def _parties(proposal: Mapping[str, Any]) -> tuple[str, str]:
    return proposal["mentee_id"], proposal["mentor_id"]
