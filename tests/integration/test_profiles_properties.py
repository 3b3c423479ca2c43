"""Property: whatever an HR system sends, profiles stays healthy, answers every invalid record in
the dead-letter topic with a reason, stores every valid event exactly once, and changes nothing else.

Hypothesis builds batches of random bytes, mutated valid events and repeated events; the test
knows from how it built each record whether it is valid (it never asks the code under test).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.local.infra import Endpoints
from tests.support import (
    ServiceProcess,
    TopicReader,
    http_status,
    publish_raw,
    running,
    unique,
    wait_for,
)

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Item:
    key: bytes
    value: bytes
    valid: bool
    person: str | None = None  # the enrolment a valid item creates


def registration(tenant: str, n: int) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"evt-{n}",
        "source": "hr/property",
        "type": "mentor-registered",
        "time": "2026-02-01T10:00:00Z",
        "tenantid": tenant,
        "data": {
            "person_id": f"p-{n}",
            "program_id": "prog",
            "display_name": "Someone",
            "email": f"p{n}@x.example",
            "languages": ["en"],
            "timezone": "UTC",
            "expertise": [{"topic": "python", "level": 3}],
            "capacity": 1,
        },
    }


# Each mutation breaks the event in a known way.
BREAKERS = {
    "drop_data_field": lambda e: e["data"].pop("email"),
    "drop_envelope_field": lambda e: e.pop("source"),
    "wrong_type": lambda e: e["data"].__setitem__("capacity", "many"),
    "out_of_range": lambda e: e["data"].__setitem__("seniority", 42),
    "bad_language": lambda e: e["data"].__setitem__("languages", ["english"]),
    "bad_timezone": lambda e: e["data"].__setitem__("timezone", "Paris"),
    "unknown_type": lambda e: e.__setitem__("type", "mentor-promoted"),
    "old_spec": lambda e: e.__setitem__("specversion", "0.3"),
    "no_tenant": lambda e: e.pop("tenantid"),
    "data_not_object": lambda e: e.__setitem__("data", [1, 2]),
}
# These keep it valid: forward compatibility.
KEEPERS = {
    "extra_envelope_field": lambda e: e.__setitem__("x-hr-batch", "2026-02"),
    "extra_data_field": lambda e: e["data"].__setitem__("favourite_tool", "vim"),
    "unicode_name": lambda e: e["data"].__setitem__("display_name", "Zoë Ødegård 李"),
}


@st.composite
def items(draw: st.DrawFn, tenant: str) -> list[Item]:
    out: list[Item] = []
    for n in range(draw(st.integers(20, 60))):
        kind = draw(st.sampled_from(["random", "break", "keep", "repeat"]))
        if kind == "random":
            out.append(Item(b"junk", draw(st.binary(min_size=0, max_size=300)), False))
            continue
        event = registration(tenant, n)
        person = event["data"]["person_id"]
        if kind == "break":
            BREAKERS[draw(st.sampled_from(sorted(BREAKERS)))](event)
            out.append(Item(person.encode(), json.dumps(event).encode(), False))
        else:
            KEEPERS[draw(st.sampled_from(sorted(KEEPERS)))](event)
            copies = 3 if kind == "repeat" else 1  # a redelivered event changes nothing
            out += [Item(person.encode(), json.dumps(event).encode(), True, person)] * copies
    return out


@pytest.fixture(scope="module")
async def profiles(service_env: dict[str, str]) -> AsyncIterator[ServiceProcess]:
    async with running(["profiles"], service_env) as procs:
        yield procs["profiles"]


@settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
async def test_any_input_is_stored_once_or_answered(
    data: st.DataObject, infra: Endpoints, db: asyncpg.Pool, profiles: ServiceProcess
) -> None:
    tenant = unique("prop")
    batch = data.draw(items(tenant))
    invalid = [i for i in batch if not i.valid]
    valid_people = {i.person for i in batch if i.valid}
    async with TopicReader(infra.bootstrap_servers, "dlq.profiles") as reader:
        await publish_raw(
            infra.bootstrap_servers, [("mentor-registered", i.key, i.value) for i in batch]
        )
        await wait_for(
            db,
            "SELECT count(*) = $2 FROM profiles.enrolments WHERE tenant_id = $1",
            tenant,
            len(valid_people),
        )
        ours = {i.value for i in invalid}
        letters = await reader.collect(
            lambda rs: len(rs) >= len(invalid), keep=lambda r: r.value in ours
        )
        letters += await reader.drain(1.0, keep=lambda r: r.value in ours)
    assert len(letters) == len(invalid), "each invalid record answered exactly once"
    assert all(dict(r.headers).get("dlq-reason") for r in letters)
    stored = await db.fetch(
        "SELECT person_id FROM profiles.enrolments WHERE tenant_id = $1", tenant
    )
    assert sorted(r["person_id"] for r in stored) == sorted(valid_people)
    assert await http_status(f"{profiles.url}/readyz") == 200
