"""Property: with random traffic from several organisations whose people and programs share ids,
no proposal, notification or read ever crosses a tenant."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator
from email.message import Message
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.registry import NAMES
from shared.local.infra import Endpoints
from shared.local.sinks import SmtpSink
from tests.support import (
    ServiceProcess,
    TopicReader,
    cloud_event,
    publish_raw,
    running,
    unique,
)

pytestmark = pytest.mark.integration
TENANTS = [unique(f"iso{i}") for i in range(12)]  # drawn without reuse by the examples
_unused = iter(TENANTS)
MENTORS = [f"m{i}" for i in range(6)]
MENTEES = [f"n{i}" for i in range(4)]


@pytest.fixture(scope="module")
async def system(
    service_env: dict[str, str], smtp: SmtpSink
) -> AsyncIterator[dict[str, ServiceProcess]]:
    env = {**service_env, **smtp.env(), "DELIVERY_TENANTS": json.dumps(TENANTS)}
    async with running(NAMES, env) as procs:
        yield procs


def person(tenant: str, role: str, person_id: str) -> dict[str, Any]:
    data: dict[str, Any] = {
        "person_id": person_id,
        "program_id": "shared-program",
        "display_name": f"{person_id} of {tenant}",
        "email": f"{person_id}@{tenant}.example",
        "languages": ["en"],
        "timezone": "Europe/Paris",
    }
    if role == "mentor":
        data |= {"expertise": [{"topic": "python", "level": 3}], "capacity": 2}
    else:
        data |= {"goals": [{"topic": "python", "priority": 1}]}
    return data


# Each tenant enrols some of the same ids: a leak would show as a partner that tenant never had.
organisation = st.tuples(
    st.sets(st.sampled_from(MENTORS), min_size=1, max_size=3),
    st.sets(st.sampled_from(MENTEES), min_size=1, max_size=4),
)


@settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck))
@given(organisations=st.lists(organisation, min_size=2, max_size=3))
async def test_nothing_crosses_a_tenant(
    organisations: list[tuple[set[str], set[str]]],
    infra: Endpoints,
    smtp: SmtpSink,
    system: dict[str, ServiceProcess],
) -> None:
    tenants = dict(zip(itertools.islice(_unused, len(organisations)), organisations, strict=True))
    records = [
        (
            f"{role}-registered",
            f"{tenant}:{pid}".encode(),
            json.dumps(
                cloud_event(f"{role}-registered", tenant, person(tenant, role, pid))
            ).encode(),
        )
        for tenant, (mentors, mentees) in tenants.items()
        for role, ids in (("mentor", mentors), ("mentee", mentees))
        for pid in sorted(ids)
    ]
    expected = sum(min(len(mentees), 2 * len(mentors)) for mentors, mentees in tenants.values())
    async with TopicReader(infra.bootstrap_servers, "match-proposed", "dlq.matching") as reader:
        await publish_raw(infra.bootstrap_servers, records)
        ours = lambda r: json.loads(r.value).get("tenantid") in tenants  # noqa: E731
        proposals = [
            json.loads(r.value)
            for r in await reader.collect(lambda rs: len(rs) >= expected, keep=ours, timeout=60)
        ]
        # Another organisation answers a proposal it has only heard of: refused as unknown.
        victim = proposals[0]
        intruder = next(t for t in tenants if t != victim["tenantid"])
        answer = {
            "match_id": victim["data"]["match_id"],
            "person_id": victim["data"]["mentee_id"],
            "decision": "declined",
        }
        raw = json.dumps(cloud_event("match-responded", intruder, answer)).encode()
        await publish_raw(
            infra.bootstrap_servers, [("match-responded", answer["match_id"].encode(), raw)]
        )
        (letter,) = await reader.collect(
            lambda rs: len(rs) >= 1, keep=lambda r: r.value == raw, timeout=30
        )
    assert dict(letter.headers)["dlq-reason-code"] == b"unknown_match"

    for event in proposals:
        mentors, mentees = tenants[event["tenantid"]]
        assert event["data"]["mentor_id"] in mentors and event["data"]["mentee_id"] in mentees, (
            event
        )

    # Every proposal mails both sides; every mail stays inside its organisation.
    deadline = time.monotonic() + 60

    def mails() -> list[Message]:
        received = [mail.parsed() for mail in list(smtp.mails)]
        return [m for m in received if any(t in m["To"] for t in tenants)]

    while len(mails()) < 2 * len(proposals):
        assert time.monotonic() < deadline, f"{len(mails())} of {2 * len(proposals)} mails"
        await asyncio.sleep(0.2)
    for message in mails():
        tenant = next(t for t in tenants if f"@{t}.example" in message["To"])
        body = " ".join(
            part.get_payload(decode=True).decode()
            for part in message.walk()
            if part.get_content_type() == "text/plain"
        )
        others = [t for t in TENANTS if t != tenant]
        assert not any(t in body for t in others), "a mail mentions another organisation"
