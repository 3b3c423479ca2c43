"""The course of a relationship: check-ins, stalls, its planned end, and what an ending means."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.matching.domain.config import ProgramConfig
from services.matching.domain.relationship import DAY, Relationship, due, ending
from shared.contract.events import ProgramConfigured

START = datetime(2026, 1, 1, tzinfo=UTC)
CONFIG = ProgramConfig(relationship_length_days=180, checkin_days=(30, 90), stall_after_days=21)


def at(days: float) -> datetime:
    return START + days * DAY


def test_nothing_is_due_before_the_first_check_in_or_a_stall() -> None:
    step = due(Relationship(START, last_session_at=at(15)), CONFIG, at(20))
    assert not step.complete and step.checkins == () and step.stalled_days is None
    assert step.next_at == at(30), "next: the first check-in (a stall would come at day 36)"


def test_each_check_in_is_asked_once_in_order() -> None:
    fresh = Relationship(START, last_session_at=at(29))
    assert due(fresh, CONFIG, at(30)).checkins == (1,)
    asked = Relationship(START, last_session_at=at(29), checkins_done=1)
    assert due(asked, CONFIG, at(31)).checkins == ()
    assert due(asked, CONFIG, at(31)).next_at == at(50), "the stall, 21 days after day 29"


def test_check_ins_that_fell_due_during_an_outage_are_all_asked() -> None:
    step = due(Relationship(START, last_session_at=at(95), stalled_at=None), CONFIG, at(100))
    assert step.checkins == (1, 2)
    assert step.next_at == at(116)


def test_a_quiet_spell_is_reported_once_with_its_length() -> None:
    quiet = Relationship(START, last_session_at=at(10), checkins_done=1)
    step = due(quiet, CONFIG, at(40))
    assert step.stalled_days == pytest.approx(30)
    reported = Relationship(START, last_session_at=at(10), checkins_done=1, stalled_at=at(40))
    assert due(reported, CONFIG, at(45)).stalled_days is None
    assert due(reported, CONFIG, at(45)).next_at == at(90)


def test_without_any_session_the_stall_counts_from_the_confirmation() -> None:
    step = due(Relationship(START, checkins_done=1), CONFIG, at(21))
    assert step.stalled_days == pytest.approx(21)


def test_at_its_length_a_relationship_completes_and_nothing_else_is_asked() -> None:
    step = due(Relationship(START), CONFIG, at(180))
    assert step.complete and step.checkins == () and step.stalled_days is None


def test_fractional_days_work_for_short_programs() -> None:
    short = ProgramConfig.of(
        ProgramConfigured(
            program_id="p",
            relationship_length_days=0.001,
            checkin_days=[0.0002],
            stall_after_days=0.0005,
        )
    )
    assert due(Relationship(START), short, START + 0.0002 * DAY).checkins == (1,)
    assert due(Relationship(START, checkins_done=1), short, at(0.0006)).stalled_days is not None
    assert due(Relationship(START), short, at(0.001)).complete


def test_default_check_ins_stop_at_a_shorter_length() -> None:
    config = ProgramConfig.of(ProgramConfigured(program_id="p", relationship_length_days=60))
    assert config.checkin_days == (30,)
    assert ProgramConfig().checkin_days == (30, 90)


@pytest.mark.parametrize(
    ("ended_by", "reason", "outcome", "waits", "paused"),
    [
        ("mentee", "goals_reached", "completed", False, False),
        ("mentor", "goals_reached", "completed", False, False),
        ("mentee", "not_a_fit", "ended_early", True, False),
        ("mentor", "not_a_fit", "ended_early", True, False),
        ("mentor", "no_time", "ended_early", True, True),
        ("mentee", "no_time", "ended_early", False, False),
        ("mentee", "other", "ended_early", False, False),
        ("program", "other", "ended_early", True, False),
    ],
)
def test_what_an_ending_means_for_each_side(
    ended_by: str, reason: str, outcome: str, waits: bool, paused: bool
) -> None:
    effect = ending(ended_by, reason)  # type: ignore[arg-type]
    assert (effect.outcome, effect.mentee_waits_again, effect.mentor_paused) == (
        outcome,
        waits,
        paused,
    )
