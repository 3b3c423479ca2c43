"""Traces: one OpenTelemetry trace from the HR system's event to the email, across services."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from services.registry import NAMES
from shared.local.infra import Endpoints
from shared.local.sinks import SmtpSink
from tests.support import cloud_event, fresh_group, publish_raw, running, unique

pytestmark = pytest.mark.integration
HR_TRACE, HR_SPAN = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"


def spans(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


async def test_one_trace_links_the_hr_event_to_the_email(
    infra: Endpoints, service_env: dict[str, str], smtp: SmtpSink, tmp_path: Path
) -> None:
    tenant = unique("traced")
    env = {**service_env, **smtp.env(), "DELIVERY_TENANTS": json.dumps([tenant])}
    files = {name: tmp_path / f"{name}.jsonl" for name in NAMES}
    person = {"program_id": "p", "languages": ["en"], "timezone": "UTC", "display_name": "Someone"}
    mentor = {
        **person,
        "person_id": "m1",
        "email": f"m1@{tenant}.example",
        "capacity": 1,
        "expertise": [{"topic": "python", "level": 4}],
    }
    mentee = {
        **person,
        "person_id": "n1",
        "email": f"n1@{tenant}.example",
        "goals": [{"topic": "python", "priority": 1}],
    }
    traceparent = [("traceparent", f"00-{HR_TRACE}-{HR_SPAN}-01".encode())]
    # Groups of this test alone: a replica of another run in a shared group could take a step
    # of the chain, and its spans would land in its own files.
    groups = {name: await fresh_group(infra.bootstrap_servers, name, "traced") for name in NAMES}
    traces = {"TRACES_FILE": str(tmp_path / "{service}.jsonl")}
    async with running(NAMES, env | traces, groups):
        await publish_raw(
            infra.bootstrap_servers,
            [
                (
                    "mentor-registered",
                    b"m1",
                    json.dumps(cloud_event("mentor-registered", tenant, mentor)).encode(),
                ),
            ],
        )
        await publish_raw(
            infra.bootstrap_servers,
            [
                (
                    "mentee-registered",
                    b"n1",
                    json.dumps(cloud_event("mentee-registered", tenant, mentee)).encode(),
                )
            ],
            headers=traceparent,
        )
        deadline = time.monotonic() + 60
        while not smtp.to(f"n1@{tenant}.example"):
            assert time.monotonic() < deadline, "no email"
            await asyncio.sleep(0.2)
        await asyncio.sleep(1)  # the send span ends just after the SMTP reply

    traced = [s for path in files.values() for s in spans(path) if s["trace_id"] == HR_TRACE]
    by_id = {s["span_id"]: s for s in traced}
    sends = [s for s in traced if s["name"] == "notifications send email"]
    assert sends, f"no delivery span in the HR trace: {[s['name'] for s in traced]}"
    chain, current = [], sends[0]
    while current is not None:
        chain.append(current["name"])
        current = by_id.get(current["parent_id"])
    assert chain[-1] == "profiles mentee-registered", chain
    assert "matching enrolment-updated" in chain and "notifications match-proposed" in chain, chain
    root = next(s for s in traced if s["name"] == "profiles mentee-registered")
    assert root["parent_id"] == HR_SPAN, "the first span continues the HR system's own span"
