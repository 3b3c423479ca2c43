"""A relationship's whole life through running matching services, on the real broker and
database, with programs measured in seconds (fractional days): completion and its freed place,
early endings and rematches, check-ins and stalls exactly once across a restart and with two
replicas, pauses, erasure, and bad input on every new event."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from shared.local.infra import Endpoints
from shared.local.processes import Services
from tests.support import (
    ServiceProcess,
    TopicReader,
    cloud_event,
    enrolment_updated,
    ingress,
    of_tenant,
    publish_raw,
    running,
    unique,
    wait_for,
)

pytestmark = pytest.mark.integration
Record = tuple[str, bytes, bytes]
LIFE = ("match-proposed", "match-confirmed", "match-ended", "feedback-requested")
TIMERS = {"EXPIRY_INTERVAL_SECONDS": "0.2", "RELATIONSHIP_INTERVAL_SECONDS": "0.2"}


def days(seconds: float) -> float:
    return seconds / 86400


@pytest.fixture(scope="module")
async def matching(service_env: dict[str, str]) -> AsyncIterator[ServiceProcess]:
    async with running(["matching"], {**service_env, **TIMERS}) as procs:
        yield procs["matching"]


def configured(tenant: str, **settings: Any) -> Record:
    return ingress("program-configured", tenant, "prog", {"program_id": "prog", **settings})


def answers(tenant: str, match: dict[str, Any]) -> list[Record]:
    return [
        ingress(
            "match-responded",
            tenant,
            match["match_id"],
            {"match_id": match["match_id"], "person_id": who, "decision": "accepted"},
        )
        for who in (match["mentee_id"], match["mentor_id"])
    ]


def ended(tenant: str, match_id: str, by: str, person: str | None, reason: str) -> Record:
    data = {"match_id": match_id, "ended_by": by, "person_id": person, "reason": reason}
    return ingress("relationship-ended", tenant, match_id, {k: v for k, v in data.items() if v})


def of(tenant: str, *types: str) -> Callable[[Any], bool]:
    return lambda r: r.topic in types and of_tenant(tenant)(r)


def data_of(records: list[Any], type_: str) -> list[dict[str, Any]]:
    return [json.loads(r.value)["data"] for r in records if r.topic == type_]


async def next_event(
    reader: TopicReader, tenant: str, type_: str, timeout: float = 30, **fields: Any
) -> dict[str, Any]:
    """The next event of `type_` of the tenant whose data has these fields."""

    def wanted(r: Any) -> bool:
        if not of(tenant, type_)(r):
            return False
        data = json.loads(r.value)["data"]
        return all(data.get(k) == v for k, v in fields.items())

    (record, *_) = await reader.collect(lambda rs: len(rs) >= 1, timeout=timeout, keep=wanted)
    found: dict[str, Any] = json.loads(record.value)["data"]
    return found


def alice_and_nina(tenant: str) -> list[Record]:
    """Mentor alice (one place) and mentee nina: each other's only match."""
    return [
        enrolment_updated(tenant, "mentor", "alice"),
        enrolment_updated(tenant, "mentee", "nina"),
    ]


async def relationship(
    bootstrap: str, reader: TopicReader, tenant: str, mentee: str = "nina"
) -> dict[str, Any]:
    """`mentee`'s proposal, accepted by both: the match once confirmed."""
    proposed = await next_event(reader, tenant, "match-proposed", mentee_id=mentee)
    await publish_raw(bootstrap, answers(tenant, proposed))
    await next_event(reader, tenant, "match-confirmed", match_id=proposed["match_id"])
    return proposed


async def test_a_relationship_completes_at_its_length_and_its_place_goes_to_the_waitlist(
    infra: Endpoints, matching: ServiceProcess
) -> None:
    tenant, bootstrap = unique("life"), infra.bootstrap_servers
    async with TopicReader(bootstrap, *LIFE) as reader:
        await publish_raw(
            bootstrap,
            [configured(tenant, relationship_length_days=days(4), checkin_days=[days(1.5)])],
        )
        await publish_raw(bootstrap, alice_and_nina(tenant))
        match = await relationship(bootstrap, reader, tenant)
        await publish_raw(bootstrap, [enrolment_updated(tenant, "mentee", "omar")])
        # omar waits: alice's only place is taken by the relationship
        early = await reader.drain(1.0, of(tenant, *LIFE))
        assert not data_of(early, "match-proposed")
        life = early + await reader.collect(
            lambda rs: bool(data_of(rs, "match-proposed")), timeout=30, keep=of(tenant, *LIFE)
        )
    (end,) = data_of(life, "match-ended")
    assert end["match_id"] == match["match_id"] and end["outcome"] == "completed"
    assert end["relationship_days"] == pytest.approx(days(4), abs=days(1.5))
    asked = data_of(life, "feedback-requested")
    checkins = sorted((a["person_id"], a["checkin"]) for a in asked if a["kind"] == "checkin")
    assert checkins == [("alice", 1), ("nina", 1)]
    closing = sorted(a["role"] for a in asked if a["kind"] == "closing")
    assert closing == ["mentee", "mentor"]
    (again,) = data_of(life, "match-proposed")
    assert (again["mentee_id"], again["mentor_id"]) == ("omar", "alice")


async def test_new_timings_apply_to_the_relationships_in_progress(
    infra: Endpoints, matching: ServiceProcess
) -> None:
    tenant, bootstrap = unique("timings"), infra.bootstrap_servers
    async with TopicReader(bootstrap, *LIFE) as reader:
        await publish_raw(bootstrap, alice_and_nina(tenant))
        match = await relationship(bootstrap, reader, tenant)  # 180 days by default
        await publish_raw(bootstrap, [configured(tenant, relationship_length_days=days(2))])
        end = await next_event(reader, tenant, "match-ended", match_id=match["match_id"])
    assert end["outcome"] == "completed" and end["mentee_rematched"] is False


async def test_not_a_fit_ends_early_and_the_mentee_gets_another_mentor_at_once(
    infra: Endpoints, db: asyncpg.Pool, matching: ServiceProcess
) -> None:
    tenant, bootstrap = unique("fit"), infra.bootstrap_servers
    async with TopicReader(bootstrap, *LIFE) as reader:
        await publish_raw(
            bootstrap,
            [
                enrolment_updated(
                    tenant, "mentor", "alice", expertise=[{"topic": "python", "level": 5}]
                ),
                enrolment_updated(
                    tenant, "mentor", "bob", expertise=[{"topic": "python", "level": 3}]
                ),
                enrolment_updated(tenant, "mentee", "nina"),
            ],
        )
        match = await relationship(bootstrap, reader, tenant)
        assert match["mentor_id"] == "alice"
        note = "We could not find a common rhythm"
        record = ended(tenant, match["match_id"], "mentee", "nina", "not_a_fit")
        event = json.loads(record[2])
        event["data"]["note"] = note
        await publish_raw(bootstrap, [(record[0], record[1], json.dumps(event).encode())])
        after = await reader.collect(
            lambda rs: (
                bool(data_of(rs, "match-proposed")) and len(data_of(rs, "feedback-requested")) >= 2
            ),
            keep=of(tenant, *LIFE),
        )
    (end,) = data_of(after, "match-ended")
    assert {k: end[k] for k in ("outcome", "reason", "ended_by", "ended_by_role")} == {
        "outcome": "ended_early",
        "reason": "not_a_fit",
        "ended_by": "nina",
        "ended_by_role": "mentee",
    }
    assert sorted(a["person_id"] for a in data_of(after, "feedback-requested")) == ["alice", "nina"]
    (again,) = data_of(after, "match-proposed")
    assert (again["mentee_id"], again["mentor_id"]) == ("nina", "bob"), "never the same pair"
    stored = await db.fetchval(
        "SELECT end_note FROM matching.matches WHERE match_id = $1", match["match_id"]
    )
    assert stored == note, "kept for coordinators"


async def test_check_ins_and_the_stall_are_sent_once_across_a_restart_and_two_replicas(
    infra: Endpoints, service_env: dict[str, str]
) -> None:
    """Two replicas run the relationship job side by side, and one restarts in the middle."""
    tenant, bootstrap = unique("timers"), infra.bootstrap_servers
    services = Services()
    for label in ("matching-1", "matching-2"):
        services.add(label, "matching", {**service_env, **TIMERS})
    async with services, TopicReader(bootstrap, *LIFE, "relationship-stalled") as reader:
        await publish_raw(
            bootstrap,
            [
                configured(
                    tenant,
                    relationship_length_days=days(60),
                    checkin_days=[days(3), days(9)],
                    stall_after_days=days(6),
                )
            ],
        )
        await publish_raw(bootstrap, alice_and_nina(tenant))
        match = await relationship(bootstrap, reader, tenant)
        confirmed_at = asyncio.get_running_loop().time()
        timers = of(tenant, "feedback-requested", "relationship-stalled")
        seen = await reader.collect(lambda rs: bool(data_of(rs, "feedback-requested")), keep=timers)
        services["matching-1"].stop()  # one replica goes down after the first check-in
        seen += await reader.drain(2.0, timers)
        await services.restart("matching-1")
        # until well after the second check-in and the stall: nothing more, nothing twice
        left = max(0.0, confirmed_at + 14 - asyncio.get_running_loop().time())
        seen += await reader.drain(left, timers)
    asked = [(a["person_id"], a["checkin"]) for a in data_of(seen, "feedback-requested")]
    assert sorted(asked) == [("alice", 1), ("alice", 2), ("nina", 1), ("nina", 2)]
    (stalled,) = data_of(seen, "relationship-stalled")
    assert stalled["match_id"] == match["match_id"]
    assert stalled["days_since_last_session"] >= days(6)


async def test_a_paused_mentor_gets_nothing_new_until_the_pause_ends(
    infra: Endpoints, db: asyncpg.Pool, matching: ServiceProcess
) -> None:
    tenant, bootstrap = unique("pause"), infra.bootstrap_servers

    def availability(person: str, available: bool, until: datetime | None = None) -> Record:
        data: dict[str, Any] = {"person_id": person, "program_id": "prog", "available": available}
        if until is not None:
            data["until"] = until.isoformat()
        return ingress("mentor-availability", tenant, person, data)

    async with TopicReader(bootstrap, "match-proposed") as reader:
        until = datetime.now(UTC) + timedelta(seconds=6)
        await publish_raw(
            bootstrap,
            [availability("alice", False, until), availability("bob", False)],
        )
        # the pauses are on another topic than the registrations: read first, as an app that
        # pauses a mentor before HR registers them would have it
        await wait_for(
            db, "SELECT count(*) = 2 FROM matching.availability WHERE tenant_id = $1", tenant
        )
        await publish_raw(
            bootstrap,
            [
                enrolment_updated(tenant, "mentor", "alice"),
                enrolment_updated(tenant, "mentor", "bob", languages=["fr"]),
                enrolment_updated(tenant, "mentee", "nina"),
                enrolment_updated(tenant, "mentee", "odile", languages=["fr"]),
            ],
        )
        assert not await reader.drain(2.0, of_tenant(tenant)), "both mentors are paused"
        first = await next_event(reader, tenant, "match-proposed", timeout=15)
        assert (first["mentee_id"], first["mentor_id"]) == ("nina", "alice")
        assert datetime.now(UTC) >= until - timedelta(seconds=0.5), "not before `until`"
        assert not await reader.drain(1.0, of_tenant(tenant)), "bob is paused until he says so"
        await publish_raw(bootstrap, [availability("bob", True)])
        second = await next_event(reader, tenant, "match-proposed")
        assert (second["mentee_id"], second["mentor_id"]) == ("odile", "bob")


async def test_feedback_is_kept_learned_from_and_erased_with_its_author(
    infra: Endpoints, db: asyncpg.Pool, matching: ServiceProcess
) -> None:
    tenant, bootstrap = unique("feedback"), infra.bootstrap_servers
    async with TopicReader(bootstrap, *LIFE, "dlq.matching") as reader:
        await publish_raw(bootstrap, alice_and_nina(tenant))
        match = await relationship(bootstrap, reader, tenant)
        match_id = match["match_id"]
        mentee_says = {
            "match_id": match_id,
            "person_id": "nina",
            "kind": "closing",
            "rating": 5,
            "goals": [{"topic": "python", "reached": "yes"}],
            "learned": True,
            "comment": "Alice opened doors for me",
        }
        mentor_says = {**mentee_says, "person_id": "alice", "rating": 4, "goals": None}
        await publish_raw(
            bootstrap,
            [
                ended(tenant, match_id, "mentee", "nina", "goals_reached"),
                ingress("feedback-given", tenant, match_id, mentee_says),
                ingress("feedback-given", tenant, match_id, mentor_says),
            ],
        )
        end = await next_event(reader, tenant, "match-ended", match_id=match_id)
        assert (end["outcome"], end["reason"]) == ("completed", "goals_reached")
        await wait_for(
            db,
            "SELECT count(*) = 2 FROM matching.feedback WHERE tenant_id = $1",
            tenant,
        )
        rating = await db.fetchrow(
            "SELECT rating_sum, rating_count FROM matching.mentor_ratings WHERE tenant_id = $1",
            tenant,
        )
        assert (rating["rating_sum"], rating["rating_count"]) == (5, 1), "the mentee's rating"
        assert not await reader.drain(0.5, of(tenant, "dlq.matching"))

        gone = cloud_event(
            "enrolment-ended",
            tenant,
            {"program_id": "prog", "person_id": "nina", "erase": True},
            source="mentornet/profiles",
        )
        await publish_raw(
            bootstrap, [("enrolment-ended", f"{tenant}:prog".encode(), json.dumps(gone).encode())]
        )
        await wait_for(
            db,
            "SELECT bool_and(comment IS NULL) FROM matching.feedback WHERE tenant_id = $1",
            tenant,
        )


BAD: list[tuple[str, str, dict[str, Any], str, str]] = [
    # topic, key, data, code, a word of the reason
    ("relationship-ended", "m-x", {"match_id": "m-x", "ended_by": "mentor", "reason": "other"}, "missing_field", "person_id"),
    ("relationship-ended", "m-x", {"match_id": "m-x", "ended_by": "boss", "reason": "other"}, "invalid_field", "ended_by"),
    ("relationship-ended", "m-x", {"match_id": "m-x", "ended_by": "program", "reason": "bored"}, "invalid_field", "reason"),
    ("feedback-given", "m-x", {"match_id": "m-x", "person_id": "p", "kind": "closing", "rating": 6, "learned": True}, "invalid_field", "rating"),
    ("feedback-given", "m-x", {"match_id": "m-x", "person_id": "p", "kind": "checkin", "rating": 3}, "missing_field", "learned"),
    ("feedback-given", "m-x", {"match_id": "m-x", "person_id": "p", "kind": "closing", "rating": 3, "learned": False, "goals": [{"topic": "x", "reached": "almost"}]}, "invalid_field", "goals"),
    ("mentor-availability", "alice", {"person_id": "alice", "program_id": "prog", "available": True, "until": "2030-01-01T00:00:00Z"}, "invalid_field", "until"),
    ("mentor-availability", "bob", {"person_id": "alice", "program_id": "prog", "available": False}, "key_mismatch", "person_id"),
    ("program-configured", "prog", {"program_id": "prog", "relationship_length_days": 10, "checkin_days": [30]}, "invalid_field", "checkin_days"),
    ("program-configured", "prog", {"program_id": "prog", "stall_after_days": 0}, "invalid_field", "stall_after_days"),
    ("relationship-ended", "m-none", {"match_id": "m-none", "ended_by": "program", "reason": "other"}, "unknown_match", "m-none"),
    ("feedback-given", "m-none", {"match_id": "m-none", "person_id": "p", "kind": "closing", "rating": 3, "learned": False}, "unknown_match", "m-none"),
]  # fmt: skip


async def test_bad_input_on_every_new_event_is_answered_with_its_reason(
    infra: Endpoints, matching: ServiceProcess
) -> None:
    tenant, bootstrap = unique("bad"), infra.bootstrap_servers
    async with TopicReader(bootstrap, *LIFE, "dlq.matching") as reader:
        await publish_raw(bootstrap, [ingress(t, tenant, k, d) for t, k, d, _, _ in BAD])
        dead = await reader.collect(
            lambda rs: len(rs) >= len(BAD), keep=of(tenant, "dlq.matching"), timeout=30
        )
        # refusals that need a match: a proposal, a stranger, goals from the mentor
        await publish_raw(bootstrap, alice_and_nina(tenant))
        proposal = await next_event(reader, tenant, "match-proposed")
        match_id = proposal["match_id"]
        closing = {"match_id": match_id, "kind": "closing", "rating": 4, "learned": True}
        refusals = [
            (ended(tenant, match_id, "mentee", "nina", "other"), "match_not_confirmed"),
            (
                ingress("feedback-given", tenant, match_id, {**closing, "person_id": "zed"}),
                "not_a_party",
            ),
            (ended(tenant, match_id, "mentor", "nina", "other"), "not_a_party"),
        ]
        await publish_raw(bootstrap, [r for r, _ in refusals])
        dead += await reader.collect(
            lambda rs: len(rs) >= len(refusals), keep=of(tenant, "dlq.matching")
        )
        await publish_raw(bootstrap, answers(tenant, proposal))
        await next_event(reader, tenant, "match-confirmed")
        goals = {**closing, "person_id": "alice", "goals": [{"topic": "python", "reached": "yes"}]}
        await publish_raw(bootstrap, [ingress("feedback-given", tenant, match_id, goals)])
        dead += await reader.collect(lambda rs: len(rs) >= 1, keep=of(tenant, "dlq.matching"))

    def header(record: Any, name: str) -> str:
        return dict(record.headers)[name].decode()

    answered = [
        (header(r, "dlq-topic"), header(r, "dlq-reason-code"), header(r, "dlq-reason"))
        for r in dead
    ]
    expected = [(t, code) for t, _, _, code, _ in BAD] + [
        ("relationship-ended", "match_not_confirmed"),
        ("feedback-given", "not_a_party"),
        ("relationship-ended", "not_a_party"),
        ("feedback-given", "not_the_mentee"),
    ]
    assert sorted((t, code) for t, code, _ in answered) == sorted(expected)
    for topic, _, data, code, word in BAD:  # each reason names the field or the match
        assert any(
            t == topic and c == code and word in reason and json.dumps(data)
            for t, c, reason in answered
        ), (topic, code, word)
