"""End to end: an HR system publishes raw CloudEvents, a proposal appears, two emails arrive.

Everything is real: the three services as processes, Kafka, PostgreSQL, and an SMTP server the
test runs itself. The HR side uses a plain Kafka producer and hand-written JSON, not our code.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from services.registry import NAMES
from shared.local.infra import Endpoints
from shared.local.sinks import SmtpSink
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


TENANT = unique("acme")


@pytest.fixture(scope="module")
async def system(
    service_env: dict[str, str], smtp: SmtpSink
) -> AsyncIterator[dict[str, ServiceProcess]]:
    # DEBUG, so that every line a service can write is written, and checked for personal data.
    env = {**service_env, **smtp.env(), "LOG_LEVEL": "DEBUG"}
    # This run's notifications process sends only this test's mail, whatever else is pending in
    # a shared database (other test runs, benchmarks).
    env["DELIVERY_TENANTS"] = json.dumps([TENANT])
    async with running(NAMES, env) as procs:
        yield procs


def hr_event(type_: str, tenant: str, event_id: str, data: dict[str, Any]) -> bytes:
    event = cloud_event(
        type_, tenant, data, id=event_id, source="hr/acme-workday", time="2026-11-02T08:30:00Z"
    )
    return json.dumps(event).encode()


async def test_registrations_become_a_proposal_and_two_emails(
    infra: Endpoints, smtp: SmtpSink, system: dict[str, ServiceProcess]
) -> None:
    tenant = TENANT
    mentor_email, mentee_email = f"marie@{tenant}.example", f"nicolas@{tenant}.example"
    mentor = {
        "person_id": "e-100",
        "program_id": "leaders-2026",
        "display_name": "Marie Curie",
        "email": mentor_email,
        "languages": ["fr", "en"],
        "timezone": "Europe/Paris",
        "department": "research",
        "seniority": 8,
        "expertise": [
            {"topic": "Public speaking", "level": 5},
            {"topic": "training design", "level": 4},
        ],
        "capacity": 2,
    }
    mentee = {
        "person_id": "e-200",
        "program_id": "leaders-2026",
        "display_name": "Nicolas Martin",
        "email": mentee_email,
        "languages": ["fr"],
        "timezone": "Europe/Paris",
        "department": "sales",
        "seniority": 3,
        "goals": [
            {"topic": "public speaking", "priority": 1},
            {"topic": "Training Design", "priority": 2},
        ],
    }
    async with TopicReader(infra.bootstrap_servers, "match-proposed") as reader:
        await publish_raw(
            infra.bootstrap_servers,
            [
                (
                    "mentor-registered",
                    b"e-100",
                    hr_event("mentor-registered", tenant, "hr-1", mentor),
                ),
                (
                    "mentee-registered",
                    b"e-200",
                    hr_event("mentee-registered", tenant, "hr-2", mentee),
                ),
            ],
        )
        (record,) = await reader.collect(
            lambda rs: len(rs) >= 1, keep=of_tenant(tenant), timeout=60
        )
    proposal = json.loads(record.value)["data"]
    assert (proposal["mentee_id"], proposal["mentor_id"], proposal["program_id"]) == (
        "e-200",
        "e-100",
        "leaders-2026",
    )
    assert 0 < proposal["score"] <= 1
    reasons = {i["criterion"]: i["reason"] for i in proposal["explanation"]}
    assert reasons["topic_fit"] == "Covers 2 of your 2 goals: public speaking, Training Design"
    assert reasons["languages"] == "You both speak French"
    assert sum(i["contribution"] for i in proposal["explanation"]) == pytest.approx(
        proposal["score"], abs=1e-6
    )

    deadline = time.monotonic() + 60
    while not (smtp.to(mentor_email) and smtp.to(mentee_email)):
        assert time.monotonic() < deadline, (
            f"emails not received; got {[m.recipients for m in list(smtp.mails)]}"
        )
        await asyncio.sleep(0.2)
    await asyncio.sleep(2)  # anything more that would arrive (a duplicate) has time to
    assert len(smtp.to(mentor_email)) == 1 and len(smtp.to(mentee_email)) == 1
    to_mentee = smtp.to(mentee_email)[0].parsed()
    assert (
        to_mentee["Message-ID"]
        and to_mentee["Message-ID"] != smtp.to(mentor_email)[0].parsed()["Message-ID"]
    )

    # No personal data in any log line of any service (names and addresses are redacted).
    for proc in system.values():
        assert proc.log is not None
        text = proc.log.read_text(errors="replace")
        for secret in (mentor_email, mentee_email, "Marie Curie", "Nicolas Martin"):
            assert secret not in text, f"{secret!r} leaked into the {proc.name} log"
