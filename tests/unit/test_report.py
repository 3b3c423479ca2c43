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
    DAY,
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
DAYS = 24  # hours, for at(): relationships last weeks


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
        self,
        person: str,
        role: str,
        registered: float,
        program: str = "p1",
        capacity: int = 0,
        received: float | None = None,
    ) -> None:
        # Mentors speak English, mentees Japanese: a matching service that happens to read these
        # events on a shared broker can never propose a pair of them on its own.
        received_at = {} if received is None else {"received_at": iso(at(received))}
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
                **received_at,
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

    def end(
        self, match: str, mentee: str, mentor: str, hours: float, outcome: str, **extra: Any
    ) -> None:
        """`extra`: reason, ended_by_role, relationship_days for relationships."""
        self.add(
            "match-ended",
            at(hours),
            {**self._match(match, mentee, mentor), "outcome": outcome, **extra},
        )

    def stall(self, match: str, mentee: str, mentor: str, hours: float) -> None:
        self.add(
            "relationship-stalled",
            at(hours),
            {**self._match(match, mentee, mentor), "days_since_last_session": 21.0},
        )

    def ask(
        self,
        match: str,
        mentee: str,
        mentor: str,
        person: str,
        hours: float,
        checkin: int | None = None,
    ) -> None:
        """feedback-requested of `person`: a check-in when numbered, else the closing one."""
        self.add(
            "feedback-requested",
            at(hours),
            {
                **self._match(match, mentee, mentor),
                "person_id": person,
                "role": "mentee" if person == mentee else "mentor",
                "kind": "closing" if checkin is None else "checkin",
                "checkin": checkin,
            },
        )

    def feedback(
        self,
        match: str,
        person: str,
        kind: str,
        hours: float,
        rating: int = 4,
        learned: bool = False,
        goals: dict[str, str] | None = None,
    ) -> None:
        """feedback-given; `goals`: topic -> how far it was reached (yes, partly, no)."""
        data: dict[str, Any] = {
            "match_id": match,
            "person_id": person,
            "kind": kind,
            "rating": rating,
            "learned": learned,
            "comment": "free text, never in a report",
        }
        if goals is not None:
            data["goals"] = [{"topic": t, "reached": r} for t, r in goals.items()]
        self.add("feedback-given", at(hours), data, source="app/test")

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
    proposals m0..m7: accepted m0 m1 m3 m6, declined m2, expired m4, pending m5, cancelled m7
        -> acceptance 4 / 6
    relationships m0 m1 m3 m6: m3 open (and stalled), m1 completed after 90 d, m0 ended early
        (no time) after 12 d, m6 cancelled -> length median 51 d, p90 82.2 d
    sessions: m1 two (plus a republished copy), m3 one, m6 one -> 4 over 4 relationships
    check-ins of m1: e1 and M1 asked at 24 h; e1 answered, M1 wrote before being asked -> 1 / 2
    closing feedback: e1 reached python (yes) but not sql, rated 5; M1 rated 3 but learned
        -> win/win; e0 reached python partly, rated 4; M2 rated 3, learned nothing -> not
        -> goals 2 of 3 reached at least partly; win/win 1 of 2
    load: M1 1/2 (m5 proposed), M2 0/1, M3 1/1 (m3) -> mean 0.5, max 1, Gini 4/9
    answers: e1 1 h, M1 4 h, M2 0.5 h -> median 1 h, p90 3.4 h
    waiting: e5 and x1 never proposed (e1 is done with the program after m1 completed)
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

    s.ask("m1", "e1", "M1", "e1", 24, checkin=1)
    s.ask("m1", "e1", "M1", "M1", 24, checkin=1)
    s.feedback("m1", "M1", "checkin", 23)  # before being asked: answers nothing
    s.feedback("m1", "e1", "checkin", 26)
    end_m1 = 5 + 90 * DAYS
    s.end("m1", "e1", "M1", end_m1, "completed", relationship_days=90.0)
    s.ask("m1", "e1", "M1", "e1", end_m1)
    s.feedback("m1", "e1", "closing", end_m1 + 1, 5, goals={"python": "yes", "sql": "no"})
    s.feedback("m1", "M1", "closing", end_m1 + 2, 3, learned=True)
    s.stall("m3", "e2", "M3", 30 + 21 * DAYS)  # no session since
    # m0 was confirmed before the retained window: only its ending and feedback are left.
    s.end(
        "m0",
        "e0",
        "M2",
        50,
        "ended_early",
        ended_by="M2",
        ended_by_role="mentor",
        reason="no_time",
        relationship_days=12.0,
    )
    s.feedback("m0", "e0", "closing", 51, 4, learned=True, goals={"python": "partly"})
    s.feedback("m0", "M2", "closing", 52, 3)

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
    assert (p1.mentors, p1.mentees, p1.mentees_waiting) == (3, 5, 2)  # e5, x1 (e1 is done)

    assert p1.time_to_proposal.values == (H, H, 2 * H, 2 * H, 4 * H)
    assert p1.time_to_proposal.median == 2 * H
    assert p1.time_to_proposal.p90 == pytest.approx(3.2 * H)
    assert p1.time_to_confirmation.values == (3 * H, 5 * H, 9 * H)
    assert p1.time_to_confirmation.median == 5 * H
    assert p1.time_to_confirmation.p90 == pytest.approx(8.2 * H)
    assert p1.response_time.values == (0.5 * H, H, 4 * H)
    assert p1.response_time.p90 == pytest.approx(3.4 * H)

    assert (p1.proposals, p1.accepted, p1.declined, p1.expired, p1.pending, p1.cancelled) == (
        8,
        4,
        1,
        1,
        1,
        1,
    )
    assert p1.acceptance_rate == pytest.approx(4 / 6)
    assert (p1.relationships, p1.open_relationships, p1.sessions) == (4, 1, 4)
    assert (p1.completed_relationships, p1.ended_early_relationships) == (1, 1)
    assert (p1.ended_early_reasons, p1.cancelled_relationships) == ({"no_time": 1}, 1)
    assert p1.relationship_length.values == (12 * DAY, 90 * DAY)
    assert p1.as_dict()["relationship_length"] == {
        "count": 2,
        "median_days": 51.0,
        "p90_days": pytest.approx(82.2),
    }
    assert p1.sessions_per_relationship == 1.0
    assert (p1.checkin_requests, p1.checkins_answered, p1.checkin_response_rate) == (2, 1, 0.5)
    assert p1.stalled_relationships == 1
    assert (p1.goals_reported, p1.goals_reached) == (3, 2)
    assert (p1.closed_with_both_feedbacks, p1.win_win, p1.win_win_rate) == (2, 1, 0.5)

    assert [(m.mentor_id, m.proposals, m.relationships, m.capacity) for m in p1.mentor_loads] == [
        ("M1", 1, 0, 2),
        ("M2", 0, 0, 1),
        ("M3", 0, 1, 1),
    ]
    assert p1.load_mean == pytest.approx(0.5)
    assert p1.load_max == 1.0
    assert p1.load_gini == pytest.approx(4 / 9)

    assert (p2.mentors, p2.mentees, p2.proposals, p2.load_gini) == (1, 0, 0, 0.0)
    assert p2.acceptance_rate is None and p2.win_win_rate is None
    assert p2.checkin_response_rate is None and p2.goal_attainment is None
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


def only(events: list[dict[str, Any]]) -> Any:
    """The health of program p1, the one program of these events."""
    [health] = program_health(events)
    return health


def test_time_to_first_proposal_counts_from_when_mentornet_received_the_registration() -> None:
    s = Stream("acme")
    s.enrol("M1", "mentor", 0, capacity=5)
    # Dated 5 minutes back by the HR system, received at 0, proposed a second later.
    s.enrol("e1", "mentee", -5 / 60, received=0)
    s.enrol("e1", "mentee", 1, received=1)  # an update later: the first reception counts
    s.propose("m1", "e1", "M1", 1 / H)
    s.confirm("m1", "e1", "M1", 2)
    s.enrol("e2", "mentee", 0)  # an older event without received_at: registered_at counts
    s.propose("m2", "e2", "M1", 1)
    health = only(s.events)
    assert health.time_to_proposal.values == (1.0, H)
    assert health.time_to_confirmation.values == (2 * H,)


def test_mentor_load_counts_open_proposals_and_open_relationships() -> None:
    s = Stream("acme")
    s.enrol("M1", "mentor", 0, capacity=4)
    s.enrol("M2", "mentor", 0, capacity=1)
    s.propose("m1", "e1", "M1", 1)  # open proposal
    s.propose("m2", "e2", "M1", 1)
    s.confirm("m2", "e2", "M1", 2)  # open relationship
    s.propose("m3", "e3", "M1", 1)
    s.end("m3", "e3", "M1", 2, "declined")  # frees the place
    s.propose("m4", "e4", "M1", 1)
    s.confirm("m4", "e4", "M1", 2)
    s.end("m4", "e4", "M1", 90 * DAYS, "completed", relationship_days=90.0)  # frees it too
    s.propose("m5", "e5", "M2", 1)
    health = only(s.events)
    assert [(m.mentor_id, m.proposals, m.relationships, m.load) for m in health.mentor_loads] == [
        ("M1", 1, 1, 0.5),
        ("M2", 1, 0, 1.0),
    ]
    assert health.load_mean == 0.75


def test_a_mentee_done_with_the_program_is_not_waiting() -> None:
    s = Stream("acme")
    for mentee in ("e1", "e2", "e3", "e4"):
        s.enrol(mentee, "mentee", 0)
    for match, mentee in (("m1", "e1"), ("m2", "e2"), ("m3", "e3"), ("m4", "e4")):
        s.propose(match, mentee, "M1", 1)
        s.confirm(match, mentee, "M1", 2)
    s.end("m1", "e1", "M1", 9, "completed", relationship_days=0.3)  # done: not waiting
    rematched = {"reason": "not_a_fit", "ended_by_role": "mentee", "mentee_rematched": True}
    s.end("m2", "e2", "M1", 9, "ended_early", **rematched)  # waits for another mentor
    stepped_back = {"reason": "no_time", "ended_by_role": "mentee", "mentee_rematched": False}
    s.end("m3", "e3", "M1", 9, "ended_early", **stepped_back)  # done too
    s.end("m4", "e4", "M1", 9, "cancelled", ended_by="M1")  # their mentor left: waits
    assert only(s.events).mentees_waiting == 2


def test_waiting_mentees_by_the_latest_reason_said_since_their_last_proposal() -> None:
    s = Stream("acme")
    for mentee in ("e1", "e2", "e3", "e4"):
        s.enrol(mentee, "mentee", 0)

    def waits(mentee: str, hours: float, reason: str) -> None:
        data = {"program_id": "p1", "mentee_id": mentee, "reason": reason}
        s.add("mentee-waiting", at(hours), data, source="mentornet/matching")

    waits("e1", 1, "no_free_place")
    waits("e1", 3, "no_topic")  # the latest counts
    waits("e2", 1, "no_topic")
    s.propose("m1", "e3", "M1", 1)  # proposed: not waiting, whatever was said before
    waits("e3", 0.5, "no_topic")
    waits("e4", 1, "no_common_language")  # said before a proposal that was declined since:
    s.propose("m2", "e4", "M1", 2)  # matching has not said why since
    s.end("m2", "e4", "M1", 3, "declined", ended_by="e4")
    health = only(s.events)
    assert health.mentees_waiting == 3
    assert health.waiting_reasons == {"no_topic": 2, "not_tried": 1}
    assert health.as_dict()["waiting_reasons"] == {"no_topic": 2, "not_tried": 1}
    assert dict(rows(health))["waiting because"] == "2 no mentor covers a goal, 1 not tried yet"


def test_relationships_by_outcome_and_their_length() -> None:
    s = Stream("acme")
    for match in ("m1", "m2", "m4", "m5"):
        s.propose(match, f"e-{match}", "M1", 0)
        s.confirm(match, f"e-{match}", "M1", 1)
    s.end("m1", "e-m1", "M1", 1 + 90 * DAYS, "completed", relationship_days=90.0)
    # Without relationship_days (an older event): from confirmed_at to the end's time.
    s.end("m2", "e-m2", "M1", 1 + 10 * DAYS, "ended_early", reason="not_a_fit")
    # Confirmed before the retained window: the ending alone shows it was a relationship.
    s.end("m3", "e-m3", "M1", 5, "ended_early", reason="no_time", relationship_days=30.0)
    s.end("m4", "e-m4", "M1", 2, "cancelled")  # a person left: neither completed nor early
    s.ask("m6", "e-m6", "M1", "e-m6", 3, checkin=1)  # an open relationship, confirmed long ago
    s.propose("m7", "e-m7", "M1", 0)
    s.end("m7", "e-m7", "M1", 1, "declined")  # a proposal only
    health = only(s.events)
    assert (health.proposals, health.accepted, health.declined) == (7, 6, 1)
    assert (health.relationships, health.open_relationships) == (6, 2)  # m5, m6
    assert (health.completed_relationships, health.ended_early_relationships) == (1, 2)
    assert health.ended_early_reasons == {"no_time": 1, "not_a_fit": 1}
    assert health.cancelled_relationships == 1
    assert health.relationship_length.values == (10 * DAY, 30 * DAY, 90 * DAY)
    assert health.relationship_length.median == 30 * DAY


def test_checkin_response_rate_per_request() -> None:
    s = Stream("acme")
    s.propose("m1", "e1", "M1", 0)
    s.confirm("m1", "e1", "M1", 0)
    for person in ("e1", "M1"):
        s.ask("m1", "e1", "M1", person, 30 * DAYS, checkin=1)
        s.ask("m1", "e1", "M1", person, 90 * DAYS, checkin=2)
    s.ask("m1", "e1", "M1", "e1", 31 * DAYS, checkin=1)  # asked again: still one request
    s.feedback("m1", "e1", "checkin", 29 * DAYS)  # before any request: answers nothing
    s.feedback("m1", "e1", "checkin", 95 * DAYS)  # answers check-in 2 only, not 1 as well
    s.feedback("m1", "M1", "checkin", 30 * DAYS)  # at the request's time: answers check-in 1
    s.feedback("m1", "x9", "checkin", 95 * DAYS)  # not asked: answers nothing
    s.feedback("m1", "M1", "closing", 95 * DAYS)  # a closing feedback is no check-in
    health = only(s.events)
    assert (health.checkin_requests, health.checkins_answered) == (4, 2)
    assert health.checkin_response_rate == 0.5


def test_stalled_now_means_no_session_since_the_latest_stall_and_not_ended() -> None:
    s = Stream("acme")
    s.stall("m1", "e1", "M1", 21 * DAYS)  # quiet since
    s.stall("m2", "e2", "M1", 21 * DAYS)
    s.session("m2", 22 * DAYS, None, None)  # met again
    s.stall("m3", "e3", "M1", 21 * DAYS)
    s.end("m3", "e3", "M1", 22 * DAYS, "ended_early", reason="no_time", relationship_days=22.0)
    s.session("m4", 5 * DAYS, None, None)
    s.stall("m4", "e4", "M1", 26 * DAYS)
    s.session("m4", 27 * DAYS, None, None)
    s.stall("m4", "e4", "M1", 48 * DAYS)  # quiet again after the session
    health = only(s.events)
    assert (health.stalled_relationships, health.open_relationships) == (2, 3)  # m1, m4


def test_goal_attainment_from_the_mentees_latest_closing_feedback() -> None:
    s = Stream("acme")
    s.ask("m1", "e1", "M1", "e1", 0, checkin=1)
    s.feedback("m1", "e1", "closing", 10, goals={"python": "no", "sql": "no", "git": "no"})
    s.feedback("m1", "e1", "closing", 20, goals={"python": "yes", "sql": "partly", "git": "no"})
    s.feedback("m1", "e1", "checkin", 5, goals={"python": "yes"})  # a check-in: not counted
    s.feedback("m1", "M1", "closing", 20, goals={"rust": "yes"})  # the mentor's: not counted
    s.ask("m2", "e2", "M1", "e2", 0, checkin=1)
    s.feedback("m2", "e2", "closing", 20)  # no goals reported
    health = only(s.events)
    assert (health.goals_reported, health.goals_reached) == (3, 2)
    assert health.goal_attainment == pytest.approx(2 / 3)


def test_win_win_needs_a_reached_goal_and_4_plus_and_the_mentors_4_plus_or_learning() -> None:
    s = Stream("acme")

    def closed(
        match: str,
        mentee: tuple[int, dict[str, str]] | None,
        mentor: tuple[int, bool] | None,
        outcome: str | None = "completed",
    ) -> None:
        if outcome is None:  # still open, closing feedback asked already
            s.ask(match, f"e-{match}", "M1", f"e-{match}", 100)
        else:
            s.end(match, f"e-{match}", "M1", 100, outcome, relationship_days=90.0)
        if mentee is not None:
            s.feedback(match, f"e-{match}", "closing", 101, mentee[0], goals=mentee[1])
        if mentor is not None:
            s.feedback(match, "M1", "closing", 101, mentor[0], learned=mentor[1])

    closed("w1", (4, {"a": "no", "b": "partly"}), (2, True))  # win: the mentor learned
    closed("w2", (5, {"a": "yes"}), (4, False))  # win: the mentor rated 4
    closed("w3", (5, {"a": "no"}), (5, True))  # no goal reached
    closed("w4", (3, {"a": "yes"}), (5, True))  # the mentee rated 3
    closed("w5", (5, {"a": "yes"}), (3, False), "ended_early")  # the mentor: 3, learned nothing
    closed("w6", (5, {"a": "yes"}), (5, True), "cancelled")  # not closed: not counted
    closed("w7", (5, {"a": "yes"}), None)  # one side only: not counted
    closed("w8", (5, {"a": "yes"}), (5, True), None)  # still open: not counted
    closed("w9", (5, {"a": "yes"}), (5, True))
    s.feedback("w9", "e-w9", "closing", 102, 2, goals={"a": "yes"})  # the latest counts: no win
    s.session("w3", 50, 5, 5)  # session ratings play no part
    health = only(s.events)
    assert (health.closed_with_both_feedbacks, health.win_win) == (6, 2)
    assert health.win_win_rate == pytest.approx(1 / 3)


# --- rendering ----------------------------------------------------------------------------------


def test_terminal_lines_state_the_figures() -> None:
    lines = dict(rows(program_health(scenario(), program="p1")[0]))
    assert lines["time to first proposal"] == "median 2.0 h, p90 3.2 h (5 mentees)"
    assert lines["time to confirmation"] == "median 5.0 h, p90 8.2 h (3 mentees)"
    assert lines["acceptance rate"] == "66.7% (4 of 6 decided)"
    assert lines["relationships"] == (
        "4 confirmed (1 open, 1 completed, 1 ended early, 1 cancelled)"
    )
    assert lines["ended early by reason"] == "no time 1"
    assert lines["relationship length"] == "median 51.0 d, p90 82.2 d (2 closed relationships)"
    assert lines["sessions per relationship"] == "1.00 (4 sessions)"
    assert lines["check-in response rate"] == "50.0% (1 of 2 check-in requests answered)"
    assert lines["stalled now"] == "1 of 1 open relationships"
    assert lines["goal attainment"] == "66.7% (2 of 3 goals reached at least partly)"
    assert lines["win/win rate"] == "50.0% (1 of 2 closed with both closing feedbacks)"
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
    assert "acme / p1" in page and "66.7% (4 of 6 decided)" in page
    chart = bar_chart("t", ["a", "<b>"], [0, 3], "mentors")
    assert chart.count("<rect") == 2 and "&lt;b&gt;" in chart
