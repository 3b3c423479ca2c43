"""Use cases of profiles: apply a batch of valid, fresh ingress events inside one transaction."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg

from services.profiles import repository
from services.profiles.domain import EnrolmentRow, ended_event, latest_registrations
from shared.contract.topics import program_key
from shared.runtime.db.outbox import OutboxRecord
from shared.runtime.logging import get_logger
from shared.runtime.pipeline import Incoming, bind_event

log = get_logger(__name__)
REGISTRATIONS = frozenset({"mentor-registered", "mentee-registered"})


async def apply_events(conn: asyncpg.Connection, batch: list[Incoming]) -> list[OutboxRecord]:
    """Registrations are stored in bulk (latest time wins); offboardings erase, then end."""
    registrations = latest_registrations(i.event for i in batch if i.event.type in REGISTRATIONS)
    # one clock reading per batch: applied in this transaction
    received_at = datetime.now(UTC).isoformat()
    rows = [(row, row.updated_data(received_at)) for row in map(EnrolmentRow.of, registrations)]
    stored = await repository.upsert_enrolments(conn, rows)
    out = [
        OutboxRecord(
            "enrolment-updated",
            program_key(row.tenant_id, row.registration.program_id).encode(),
            row.updated_bytes(data),
            row.updated_headers(),
        )
        for row, data in rows
        if row.cause.id in stored
    ]
    for incoming in batch:
        event = incoming.event
        if event.type != "person-offboarded":
            continue
        with bind_event(event):
            programs = await repository.offboard(
                conn, event.tenantid, event.data.person_id, event.time
            )
            log.info("person offboarded", programs=len(programs))
        out += [
            OutboxRecord.of_event(
                "enrolment-ended", program_key(event.tenantid, p), ended_event(event, p)
            )
            for p in programs
        ]
    return out
