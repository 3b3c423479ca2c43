"""End to end: two relationships lived in seconds, from HR registrations to the report's figures.

The three services run as processes on the real broker and database. HR registers two mentors
and two mentees through profiles; the apps (this test, with hand-written JSON) accept, hold
sessions, answer the check-in, end one relationship early, and give closing feedback; the other
relationship completes at its length. The report, read from the topics as an analytics team
would, then counts one win/win out of two.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from services.registry import NAMES
from shared.local.infra import Endpoints
from shared.local.sinks import SmtpSink
from shared.ops.analytics import program_health
from shared.ops.cli.dlq import kafka_settings
from shared.ops.cli.report import collect_events
from tests.support import (
    ServiceProcess,
    TopicReader,
    cloud_event,
    of_tenant,
    publish_raw,
    running,
    unique,
)

pytestmark = pytest.mark.e2e
TENANT = unique("life")
PROGRAM = "pairs-2026"
SECONDS = 1 / 86400


@pytest.fixture(scope="module")
async def system(
    service_env: dict[str, str], smtp: SmtpSink
) -> AsyncIterator[dict[str, ServiceProcess]]:
    env = {**service_env, **smtp.env(), "RELATIONSHIP_INTERVAL_SECONDS": "0.2"}
    env["DELIVERY_TENANTS"] = json.dumps([TENANT])
    async with running(NAMES, env) as procs:
        yield procs


def event(type_: str, key: str, data: dict[str, Any]) -> tuple[str, bytes, bytes]:
    return (type_, key.encode(), json.dumps(cloud_event(type_, TENANT, data)).encode())


def person(person_id: str, name: str, **role: Any) -> dict[str, Any]:
    return {
        "person_id": person_id,
        "program_id": PROGRAM,
        "display_name": name,
        "email": f"{person_id}@{TENANT}.example",
        "languages": ["fr"],
        "timezone": "Europe/Paris",
        **role,
    }


def feedback(match_id: str, who: str, kind: str, rating: int, **more: Any) -> Any:
    data = {"match_id": match_id, "person_id": who, "kind": kind, "rating": rating, **more}
    return event("feedback-given", match_id, {"learned": False, **data})


async def test_two_relationships_end_and_the_report_counts_one_win_win(
    infra: Endpoints, system: dict[str, ServiceProcess]
) -> None:
    bootstrap = infra.bootstrap_servers
    topics = ("match-proposed", "match-confirmed", "match-ended", "feedback-requested")
    async with TopicReader(bootstrap, *topics) as reader:
        timings = {
            "program_id": PROGRAM,
            "relationship_length_days": 12 * SECONDS,
            "checkin_days": [4 * SECONDS],
            "stall_after_days": 30 * SECONDS,
        }
        await publish_raw(bootstrap, [event("program-configured", PROGRAM, timings)])
        python = [{"topic": "python", "level": 5}]
        await publish_raw(
            bootstrap,
            [
                event("mentor-registered", "m-1", person("m-1", "Marie", expertise=python, capacity=1)),
                event("mentor-registered", "m-2", person("m-2", "Paul", expertise=python, capacity=1)),
                event("mentee-registered", "e-1", person("e-1", "Nina", goals=[{"topic": "python", "priority": 1}])),
                event("mentee-registered", "e-2", person("e-2", "Omar", goals=[{"topic": "python", "priority": 1}])),
            ],
        )  # fmt: skip
        proposals = await reader.collect(
            lambda rs: len(rs) >= 2, keep=lambda r: r.topic == "match-proposed" and of_tenant(TENANT)(r)
        )  # fmt: skip
        matches = {
            json.loads(r.value)["data"]["mentee_id"]: json.loads(r.value)["data"] for r in proposals
        }
        for m in matches.values():
            await publish_raw(
                bootstrap,
                [
                    event("match-responded", m["match_id"], {"match_id": m["match_id"], "person_id": who, "decision": "accepted"})
                    for who in (m["mentee_id"], m["mentor_id"])
                ],
            )  # fmt: skip
        nina, omar = matches["e-1"], matches["e-2"]
        seen = await reader.collect(
            lambda rs: sum(r.topic == "feedback-requested" for r in rs) >= 4,
            keep=of_tenant(TENANT),
        )  # both check-ins of both pairs
        session = {"session_id": "s-1", "duration_minutes": 45, "mentor_rating": 5}
        await publish_raw(
            bootstrap,
            [
                event("session-completed", nina["match_id"], {"match_id": nina["match_id"], **session}),
                feedback(nina["match_id"], "e-1", "checkin", 4),
                feedback(nina["match_id"], nina["mentor_id"], "checkin", 5, learned=True),
                event(
                    "relationship-ended",
                    omar["match_id"],
                    {"match_id": omar["match_id"], "ended_by": "mentor", "person_id": omar["mentor_id"], "reason": "no_time"},
                ),
            ],
        )  # fmt: skip
        seen += await reader.collect(
            lambda rs: sum(r.topic == "match-ended" for r in rs) >= 2, keep=of_tenant(TENANT)
        )
        goals = [{"topic": "python", "reached": "partly"}]
        await publish_raw(
            bootstrap,
            [
                feedback(nina["match_id"], "e-1", "closing", 5, goals=goals),
                feedback(nina["match_id"], nina["mentor_id"], "closing", 3, learned=True),
                feedback(omar["match_id"], "e-2", "closing", 4, goals=goals),
                feedback(omar["match_id"], omar["mentor_id"], "closing", 3),
            ],
        )
    ended = {
        json.loads(r.value)["data"]["match_id"]: json.loads(r.value)["data"]
        for r in seen
        if r.topic == "match-ended"
    }
    assert ended[nina["match_id"]]["outcome"] == "completed"
    assert (ended[omar["match_id"]]["outcome"], ended[omar["match_id"]]["reason"]) == (
        "ended_early",
        "no_time",
    )

    # The apps' events are on the topics (acks=all): the report reads up to the end offsets.
    events, _ = await collect_events(kafka_settings(bootstrap), TENANT, 30.0, True)
    (health,) = program_health(events, tenant=TENANT, program=PROGRAM)
    report = health.as_dict()
    assert report["completed_relationships"] == 1 and report["ended_early_relationships"] == 1
    assert report["ended_early_reasons"] == {"no_time": 1}
    assert report["checkin_response_rate"] == pytest.approx(2 / 4)
    assert report["win_win"] == 1 and report["win_win_rate"] == pytest.approx(1 / 2)
