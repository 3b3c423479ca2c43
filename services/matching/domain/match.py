"""A match: a proposal of one mentor to one mentee, and the relationship it becomes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Literal

Side = Literal["mentee", "mentor"]


class MatchStatus(StrEnum):
    """Where a match stands; the values are what the database stores."""

    PROPOSED = "proposed"  # waiting for both to accept, until it expires
    CONFIRMED = "confirmed"  # both accepted: the relationship runs
    DECLINED = "declined"  # one of them said no
    EXPIRED = "expired"  # not answered in time
    CANCELLED = "cancelled"  # one of them left the program or changed role
    COMPLETED = "completed"  # the relationship reached its length, or its goals
    ENDED_EARLY = "ended_early"  # someone ended the relationship before its length


@dataclass(frozen=True)
class Match:
    match_id: str
    tenant_id: str
    program_id: str
    mentee_id: str
    mentor_id: str
    status: MatchStatus
    mentee_accepted_at: datetime | None = None
    mentor_accepted_at: datetime | None = None
    confirmed_at: datetime | None = None  # set once: the relationship started then

    def side_of(self, person_id: str) -> Side | None:
        """Which side of the match a person is on (None: not part of it)."""
        if person_id == self.mentee_id:
            return "mentee"
        return "mentor" if person_id == self.mentor_id else None

    @property
    def accepted_by_both(self) -> bool:
        return self.mentee_accepted_at is not None and self.mentor_accepted_at is not None

    @property
    def was_confirmed(self) -> bool:
        """A relationship started, whether it still runs or has ended."""
        return self.confirmed_at is not None
