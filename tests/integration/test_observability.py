"""Metrics against running services: FastStream's own and mentornet's domain metrics move."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from shared.local.infra import Endpoints
from tests.support import TopicReader, cloud_event, of_tenant, publish_raw, running, unique

pytestmark = pytest.mark.integration


def sample(text: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include `labels` (0 when absent)."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_metrics_count_what_the_services_did(
    infra: Endpoints, service_env: dict[str, str]
) -> None:
    tenant = unique("metrics")
    person = {
        "program_id": "p",
        "display_name": "X",
        "email": "x@example.org",
        "languages": ["en"],
        "timezone": "UTC",
    }
    records = [
        (
            "mentor-registered",
            b"m1",
            json.dumps(
                cloud_event(
                    "mentor-registered",
                    tenant,
                    {
                        **person,
                        "person_id": "m1",
                        "expertise": [{"topic": "python", "level": 3}],
                        "capacity": 1,
                    },
                )
            ).encode(),
        ),
        (
            "mentee-registered",
            b"n1",
            json.dumps(
                cloud_event(
                    "mentee-registered",
                    tenant,
                    {**person, "person_id": "n1", "goals": [{"topic": "python", "priority": 1}]},
                )
            ).encode(),
        ),
        ("mentee-registered", b"n1", b"not json at all"),
    ]
    async with (
        running(["profiles", "matching"], service_env) as procs,
        TopicReader(infra.bootstrap_servers, "match-proposed") as reader,
    ):
        await publish_raw(infra.bootstrap_servers, records)
        await reader.collect(lambda rs: len(rs) >= 1, keep=of_tenant(tenant))
        async with httpx.AsyncClient() as client:
            profiles = (await client.get(f"{procs['profiles'].url}/metrics")).text
            matching = (await client.get(f"{procs['matching'].url}/metrics")).text

    assert (
        sample(profiles, "mentornet_events_total", topic="mentor-registered", outcome="accepted")
        >= 1
    )
    assert (
        sample(
            profiles,
            "mentornet_events_total",
            topic="mentee-registered",
            outcome="rejected:not_json",
        )
        >= 1
    )
    assert sample(profiles, "faststream_received_messages_total", app_name="profiles") >= 1
    assert sample(profiles, "mentornet_outbox_backlog") >= 0
    assert "mentornet_outbox_backlog" in profiles and "mentornet_consumer_lag" in profiles
    assert sample(matching, "mentornet_proposals_total", mode="continuous") >= 1
    assert sample(matching, "mentornet_time_to_match_seconds_count") >= 1
    assert (
        sample(matching, "mentornet_events_total", topic="enrolment-updated", outcome="accepted")
        >= 2
    )
