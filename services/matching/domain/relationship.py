"""A confirmed relationship's life: check-ins, stalls, its planned end, and how an ending
affects the mentee and the mentor. Pure functions, so every rule is unit-tested without I/O.

Times count from the confirmation, in days (fractional days allowed: tests run in seconds).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from services.matching.domain.config import ProgramConfig

DAY = timedelta(days=1)


@dataclass(frozen=True)
class Relationship:
    """What the relationship job needs of one confirmed match."""

    confirmed_at: datetime
    last_session_at: datetime | None = None
    checkins_done: int = 0  # how many of the program's checkin_days were asked already
    stalled_at: datetime | None = None  # the current quiet spell was reported (None: not yet)

    @property
    def last_activity(self) -> datetime:
        """The last session, or the confirmation when none was held."""
        return max(self.confirmed_at, self.last_session_at or self.confirmed_at)


@dataclass(frozen=True)
class Due:
    """What is due for a relationship now, and when to look at it next."""

    complete: bool = False  # the planned length is reached
    checkins: tuple[int, ...] = ()  # check-ins to ask now, numbered from 1
    stalled_days: float | None = None  # days without a session, when a stall is to be reported
    next_at: datetime | None = None  # None: only when it completes (then nothing)


def due(relationship: Relationship, config: ProgramConfig, now: datetime) -> Due:
    """Each check-in is asked once, each quiet spell reported once, and nothing is asked once the
    length is reached (the closing feedback replaces it). Check-ins that fell due while no
    replica ran are all asked, in order: none is missed."""
    start = relationship.confirmed_at
    ends_at = start + config.relationship_length_days * DAY
    if now >= ends_at:
        return Due(complete=True)
    moments = [start + day * DAY for day in config.checkin_days]
    pending = list(enumerate(moments, start=1))[relationship.checkins_done :]
    checkins = tuple(n for n, at in pending if at <= now)
    later = [at for _, at in pending if at > now]
    stall_at = relationship.last_activity + config.stall_after_days * DAY
    stalled_days = None
    if relationship.stalled_at is None:
        if stall_at <= now:
            stalled_days = (now - relationship.last_activity) / DAY
        else:
            later.append(stall_at)
    return Due(False, checkins, stalled_days, min([ends_at, *later]))


Outcome = Literal["completed", "ended_early"]
EndedBy = Literal["mentor", "mentee", "program"]
EndReason = Literal["goals_reached", "no_time", "not_a_fit", "other"]


@dataclass(frozen=True)
class Ending:
    """What an ending means for each side."""

    outcome: Outcome
    mentee_waits_again: bool  # back on the waitlist (first in line), or done with the program
    mentor_paused: bool  # no new proposal in the program until they say they are available


def ending(ended_by: EndedBy, reason: EndReason) -> Ending:
    """Goals reached is a completion: the mentee is done. Otherwise the mentee is matched again,
    unless they ended it themselves for another reason than a poor fit (no time, other: they
    step back). A mentor who has no time is paused until they say they are available."""
    if reason == "goals_reached":
        return Ending("completed", mentee_waits_again=False, mentor_paused=False)
    mentee_steps_back = ended_by == "mentee" and reason != "not_a_fit"
    return Ending(
        "ended_early",
        mentee_waits_again=not mentee_steps_back,
        mentor_paused=ended_by == "mentor" and reason == "no_time",
    )
