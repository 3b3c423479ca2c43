"""What profiles stores for a registration, column by column, and the canonical event it publishes.

Rows reach PostgreSQL as the canonical payload's JSON (see services/profiles/repository.py): every
column must still hold exactly what the validated registration says, text with quotes, escapes
and accents, times with their offset and microseconds, absent optional fields as NULL.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from services.profiles import repository
from services.profiles.domain import SOURCE, EnrolmentRow, derived_id
from shared.contract.envelope import CloudEvent, RawJson, decode_record
from shared.runtime.db.outbox import OutboxRecord
from tests.support import cloud_event, mentor_data, unique

pytestmark = pytest.mark.integration


@pytest.fixture
async def conn(db: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A connection inside a transaction that is rolled back: the test leaves nothing behind."""
    async with db.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        await conn.execute("SET LOCAL search_path = profiles, public")
        try:
            yield conn
        finally:
            await transaction.rollback()


def registrations(tenant: str) -> list[EnrolmentRow]:
    mentor = mentor_data(
        "p-1",
        display_name=' Zoë "the \\ Quant" O\'Neil\t ',
        department='R&D, "labs"',
        seniority=7,
        manager_id="m-1",
        languages=["EN", "pt"],
        learning_interests=["kubernetes"],
        expertise=[{"topic": "python", "level": 5}, {"topic": "négociation", "level": 2}],
    )
    mentee = {k: v for k, v in mentor_data("p-2").items() if k not in ("expertise", "capacity")}
    mentee |= {"goals": [{"topic": "python", "priority": 1}], "offers": ["excel"]}
    events = [
        cloud_event("mentor-registered", tenant, mentor, time="2026-05-01T10:00:00.123456+02:00"),
        cloud_event("mentee-registered", tenant, mentee, time="2026-05-02T00:00:00Z"),
    ]
    return [
        EnrolmentRow.of(
            decode_record(
                json.dumps(e).encode(), topic=e["type"], key=e["data"]["person_id"].encode()
            )
        )
        for e in events
    ]


def expected(row: EnrolmentRow) -> dict[str, Any]:
    """The columns as the validated registration says them (what profiles always stored)."""
    r = row.registration
    return {
        "tenant_id": row.tenant_id,
        "program_id": r.program_id,
        "person_id": r.person_id,
        "role": row.role,
        "display_name": r.display_name,
        "email": r.email,
        "languages": list(r.languages),
        "timezone": r.timezone,
        "department": r.department,
        "seniority": r.seniority,
        "manager_id": r.manager_id,
        "expertise": [e.model_dump() for e in getattr(r, "expertise", [])],
        "goals": [g.model_dump() for g in getattr(r, "goals", [])],
        "capacity": getattr(r, "capacity", 0),
        "event_time": row.cause.time,
        "event_id": row.cause.id,
    }


async def test_each_column_holds_what_the_registration_says(conn: asyncpg.Connection) -> None:
    tenant = unique("storage")
    rows = registrations(tenant)
    received_at = datetime.now(UTC).isoformat()
    stored = await repository.upsert_enrolments(
        conn, [(r, r.updated_data(received_at)) for r in rows]
    )
    assert stored == {r.cause.id for r in rows}
    found = {
        r["person_id"]: dict(r)
        for r in await conn.fetch("SELECT * FROM enrolments WHERE tenant_id = $1", tenant)
    }
    for row in rows:
        got = found[row.registration.person_id]
        for column in ("expertise", "goals"):
            if isinstance(got[column], str):  # a pool without a jsonb codec answers text
                got[column] = json.loads(got[column])
        assert got == expected(row)
    assert found["p-1"]["display_name"] == 'Zoë "the \\ Quant" O\'Neil'  # stripped, as validated
    assert found["p-1"]["languages"] == ["en", "pt"]  # lowered, as validated

    # An older registration of a stored enrolment changes nothing and is not published.
    again = await repository.upsert_enrolments(conn, [(rows[0], rows[0].updated_data(received_at))])
    assert again == set()


def canonical_event(row: EnrolmentRow, received_at: datetime) -> CloudEvent:
    """The canonical event as a model, which the contract serialises: what the bytes must be."""
    cause = row.cause
    return CloudEvent.model_construct(
        id=derived_id(cause, "enrolment-updated"),
        source=SOURCE,
        type="enrolment-updated",
        time=cause.time,
        tenantid=row.tenant_id,
        correlationid=cause.correlation_id,
        traceparent=cause.traceparent,
        specversion="1.0",
        datacontenttype="application/json",
        data=RawJson(row.updated_data(received_at.isoformat())),
    )


def test_the_canonical_record_is_the_canonical_event_serialised() -> None:
    received_at = datetime.now(UTC)
    for row in registrations("acme"):
        event = canonical_event(row, received_at)
        reference = OutboxRecord.of_event("enrolment-updated", "k", event)
        assert row.updated_bytes(row.updated_data(received_at.isoformat())) == reference.value
        assert row.updated_headers() == reference.headers
