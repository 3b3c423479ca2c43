"""`mentornet report`'s figures on a hand-written stream whose answers are worked out below.

`scenario()` is also published to the real broker by tests/integration/test_cli.py, so the CLI
must print exactly these figures.
"""

from __future__ import annotations

import random
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.contract.envelope import decode_record
from shared.ops.analytics import (
    LOAD_EDGES,
    TIME_EDGES,
    gini,
    histogram,
    percentile,
    program_health,
)
from shared.ops.cli.report import bar_chart, duration, render_html, rows

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
H = 3600.0


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


class Stream:
    """Canonical and app events of one tenant, valid under contract v1 (so they can be sent)."""

    def __init__(self, tenant: str) -> None:
        self.tenant = tenant
        self.events: list[dict[str, Any]] = []

    def add(
        self, type_: str, when: datetime, data: dict[str, Any], source: str = "mentornet/test"
    ) -> dict[str, Any]:
        event = {
            "specversion": "1.0",
            "id": uuid.uuid4().hex,
            "source": source,
            "type": type_,
            "time": iso(when),
            "datacontenttype": "application/json",
            "tenantid": self.tenant,
            "data": data,
        }
        self.events.append(event)
        return event

    def enrol(
        self, person: str, role: str, registered: float, program: str = "p1", capacity: int = 0
    ) -> None:
        # Mentors speak English, mentees Japanese: a matching service that happens to read these
        # events on a shared broker can never propose a pair of them on its own.
        self.add(
            "enrolment-updated",
            at(registered + 0.01),
            {
                "program_id": program,
                "person_id": person,
                "role": role,
                "display_name": person.upper(),
                "email": f"{person}@example.org",
                "languages": ["en"] if role == "mentor" else ["ja"],
                "timezone": "Europe/Paris",
                "expertise": [{"topic": "python", "level": 4}] if role == "mentor" else [],
                "goals": [{"topic": "python", "priority": 1}] if role == "mentee" else [],
                "capacity": capacity,
                "registered_at": iso(at(registered)),
            },
        )

    def offboard(self, person: str, hours: float, program: str = "p1") -> None:
        self.add(
            "enrolment-ended",
            at(hours),
            {"program_id": program, "person_id": person, "reason": "offboarded", "erase": True},
        )

    def _match(self, match: str, mentee: str, mentor: str) -> dict[str, Any]:
        return {"match_id": match, "program_id": "p1", "mentee_id": mentee, "mentor_id": mentor}

    def propose(self, match: str, mentee: str, mentor: str, hours: float) -> None:
        self.add(
            "match-proposed",
            at(hours),
            {
                **self._match(match, mentee, mentor),
                "score": 0.8,
                "explanation": [
                    {"criterion": "topic_fit", "weight": 1.0, "contribution": 0.8, "reason": "ok"}
                ],
                "expires_at": iso(at(hours + 72)),
            },
        )

    def confirm(self, match: str, mentee: str, mentor: str, hours: float) -> None:
        self.add(
            "match-confirmed",
            at(hours),
            {**self._match(match, mentee, mentor), "confirmed_at": iso(at(hours))},
        )

    def end(self, match: str, mentee: str, mentor: str, hours: float, outcome: str) -> None:
        self.add(
            "match-ended", at(hours), {**self._match(match, mentee, mentor), "outcome": outcome}
        )

    def respond(self, match: str, person: str, hours: float, decision: str = "accepted") -> None:
        self.add(
            "match-responded",
            at(hours),
            {"match_id": match, "person_id": person, "decision": decision},
            source="app/test",
        )

    def session(
        self, match: str, hours: float, mentor_rating: int | None, mentee_rating: int | None
    ) -> dict[str, Any]:
        data: dict[str, Any] = {
            "match_id": match,
            "session_id": uuid.uuid4().hex[:8],
            "duration_minutes": 45,
        }
        if mentor_rating is not None:
            data["mentor_rating"] = mentor_rating
        if mentee_rating is not None:
            data["mentee_rating"] = mentee_rating
        return self.add("session-completed", at(hours), data, source="app/test")


def scenario(tenant: str = "acme") -> list[dict[str, Any]]:
    """Program p1: 3 mentors, 6 mentees (2 offboarded) and a person who changed role.

    time to first proposal: e1 1 h, e2 2 h, e3 4 h, e4 1 h, e6 2 h -> median 2 h, p90 3.2 h
    time to confirmation:   e1 5 h, e2 9 h, e4 3 h                 -> median 5 h, p90 8.2 h
    proposals m1..m7: accepted m1 m3 m6, declined m2, expired m4, pending m5, cancelled m7
        -> acceptance 3 / 5 = 0.6
    sessions: m1 two (ratings 5/4 and 4/5, plus a republished copy), m3 one (5/3), m6 one (4/-)
        -> 4 sessions over 3 relationships; rated both ways m1, m3; win/win m1 -> 0.5
    load: M1 1/2, M2 0/1 (m6 cancelled), M3 1/1 -> mean 0.5, max 1, Gini 4/9
    answers: e1 1 h, M1 4 h, M2 0.5 h -> median 1 h, p90 3.4 h
    """
    s = Stream(tenant)
    s.enrol("M1", "mentor", 0, capacity=2)
    s.add(  # an older registration arriving late changes nothing (latest time wins)
        "enrolment-updated",
        at(-5),
        {**s.events[-1]["data"], "capacity": 9, "registered_at": iso(at(-5))},
    )
    s.enrol("M2", "mentor", 0, capacity=1)
    s.enrol("M3", "mentor", 0, capacity=1)
    s.enrol("x1", "mentor", 0, capacity=3)
    s.enrol("x1", "mentee", 1)  # changed role: the latest enrolment decides
    for person, registered in [("e1", 0), ("e2", 1), ("e3", 2), ("e4", 3), ("e5", 0), ("e6", 0)]:
        s.enrol(person, "mentee", registered)

    s.propose("m1", "e1", "M1", 1)
    s.respond("m1", "e1", 2)
    s.respond("m1", "M1", 5)
    s.respond("m1", "e1", 6)  # a second answer: only the first counts
    s.confirm("m1", "e1", "M1", 5)

    s.propose("m2", "e2", "M2", 3)
    s.respond("m2", "M2", 3.5, "declined")
    s.end("m2", "e2", "M2", 3.5, "declined")
    s.propose("m3", "e2", "M3", 4)
    s.respond("m3", "e5", 4.5)  # not a party of m3: ignored
    s.confirm("m3", "e2", "M3", 10)

    s.propose("m4", "e3", "M1", 6)
    s.end("m4", "e3", "M1", 78, "expired")
    s.propose("m5", "e3", "M1", 80)

    s.propose("m6", "e4", "M2", 4)
    s.confirm("m6", "e4", "M2", 6)
    s.offboard("e4", 30)
    s.end("m6", "e4", "M2", 30, "cancelled")

    s.propose("m7", "e6", "M3", 2)
    s.offboard("e6", 3)
    s.end("m7", "e6", "M3", 3, "cancelled")
    s.respond("nope", "e1", 3)  # an unknown match: ignored

    s.session("m1", 20, 5, 4)
    s.events.append(dict(s.session("m1", 40, 4, 5)))  # republished: same id, counted once
    s.session("m3", 30, 5, 3)
    s.session("m6", 20, 4, None)
    s.session("m4", 20, 5, 5)  # never confirmed: not a session of a relationship

    s.enrol("M9", "mentor", 0, program="p2", capacity=2)
    return s.events


# --- statistics --------------------------------------------------------------------------------


def test_percentile_interpolates_between_closest_ranks() -> None:
    assert percentile([], 0.5) is None
    assert percentile([7.0], 0.9) == 7.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert percentile([1.0, 2.0, 4.0], 0.9) == pytest.approx(3.6)
    assert percentile([10.0, 0.0, 5.0], 0.0) == 0.0


def test_gini_of_equal_and_concentrated_loads() -> None:
    assert gini([]) is None
    assert gini([0.0, 0.0]) == 0.0
    assert gini([0.5, 0.5, 0.5]) == pytest.approx(0.0)
    assert gini([0.0, 0.0, 0.0, 1.0]) == pytest.approx(0.75)  # (n - 1) / n: one holds all
    assert gini([0.0, 0.5, 1.0]) == pytest.approx(4 / 9)


def test_histogram_buckets_are_half_open() -> None:
    assert histogram([0, 1, 1.5, 2, 9], [1, 2]) == [1, 2, 2]
    assert histogram([0.0, 0.2, 0.5, 1.0, 1.5], LOAD_EDGES) == [1, 1, 1, 1, 1]
    assert histogram([10, 2 * H, 7 * 86400], TIME_EDGES) == [1, 1, 0, 0, 0, 1, 0]


# --- the report --------------------------------------------------------------------------------


def test_every_scenario_event_is_valid_under_the_contract() -> None:
    import json

    for event in scenario():
        decode_record(json.dumps(event).encode(), topic=event["type"])


def test_program_health_of_the_scenario() -> None:
    [p1, p2] = program_health(scenario("acme"), tenant="acme")
    assert (p1.tenant, p1.program, p2.program) == ("acme", "p1", "p2")
    assert (p1.mentors, p1.mentees, p1.mentees_waiting) == (3, 5, 2)  # e5 and x1 wait

    assert p1.time_to_proposal.values == (H, H, 2 * H, 2 * H, 4 * H)
    assert p1.time_to_proposal.median == 2 * H
    assert p1.time_to_proposal.p90 == pytest.approx(3.2 * H)
    assert p1.time_to_confirmation.values == (3 * H, 5 * H, 9 * H)
    assert p1.time_to_confirmation.median == 5 * H
    assert p1.time_to_confirmation.p90 == pytest.approx(8.2 * H)
    assert p1.response_time.values == (0.5 * H, H, 4 * H)
    assert p1.response_time.p90 == pytest.approx(3.4 * H)

    assert (p1.proposals, p1.accepted, p1.declined, p1.expired, p1.pending, p1.cancelled) == (
        7,
        3,
        1,
        1,
        1,
        1,
    )
    assert p1.acceptance_rate == pytest.approx(0.6)
    assert (p1.relationships, p1.open_relationships, p1.sessions) == (3, 2, 4)
    assert p1.sessions_per_relationship == pytest.approx(4 / 3)
    assert (p1.rated_both_ways, p1.win_win, p1.win_win_rate) == (2, 1, 0.5)

    assert [(m.mentor_id, m.relationships, m.capacity) for m in p1.mentor_loads] == [
        ("M1", 1, 2),
        ("M2", 0, 1),
        ("M3", 1, 1),
    ]
    assert p1.load_mean == pytest.approx(0.5)
    assert p1.load_max == 1.0
    assert p1.load_gini == pytest.approx(4 / 9)

    assert (p2.mentors, p2.mentees, p2.proposals, p2.load_gini) == (1, 0, 0, 0.0)
    assert p2.acceptance_rate is None and p2.win_win_rate is None
    assert p2.time_to_proposal.median is None


def test_order_of_arrival_changes_nothing() -> None:
    events = scenario("acme")
    expected = program_health(events)
    random.Random(3).shuffle(events)
    assert program_health(events) == expected


def test_tenant_and_program_filters() -> None:
    events = scenario("acme") + scenario("globex")
    assert {(h.tenant, h.program) for h in program_health(events)} == {
        ("acme", "p1"),
        ("acme", "p2"),
        ("globex", "p1"),
        ("globex", "p2"),
    }
    assert [
        (h.tenant, h.program) for h in program_health(events, tenant="globex", program="p1")
    ] == [("globex", "p1")]
    assert program_health(events, tenant="initech") == []


def test_re_enrolment_after_offboarding_counts_again() -> None:
    s = Stream("acme")
    s.enrol("e1", "mentee", 0)
    s.offboard("e1", 2)
    assert program_health(s.events)[0].mentees == 0
    s.enrol("e1", "mentee", 5)
    assert program_health(s.events)[0].mentees == 1


# --- rendering ----------------------------------------------------------------------------------


def test_terminal_lines_state_the_figures() -> None:
    lines = dict(rows(program_health(scenario(), program="p1")[0]))
    assert lines["time to first proposal"] == "median 2.0 h, p90 3.2 h (5 mentees)"
    assert lines["time to confirmation"] == "median 5.0 h, p90 8.2 h (3 mentees)"
    assert lines["acceptance rate"] == "60.0% (3 of 5 decided)"
    assert lines["sessions per relationship"] == "1.33 (4 sessions)"
    assert lines["win/win rate"] == "50.0% (1 of 2 rated both ways)"
    assert lines["mentor load"] == "mean 50.0%, max 100.0%, Gini 0.444"
    assert [duration(s) for s in (None, 30, 600, 7200, 3 * 86400)] == [
        "-",
        "30 s",
        "10.0 min",
        "2.0 h",
        "3.0 d",
    ]


def test_html_is_self_contained_with_inline_svg_charts() -> None:
    page = render_html(program_health(scenario()), "all tenants", T0)
    assert page.startswith("<!DOCTYPE html>") and page.count("<svg") == 6
    assert "<script" not in page and not re.search(r"(src|href)=", page)
    assert "acme / p1" in page and "60.0% (3 of 5 decided)" in page
    chart = bar_chart("t", ["a", "<b>"], [0, 3], "mentors")
    assert chart.count("<rect") == 2 and "&lt;b&gt;" in chart
