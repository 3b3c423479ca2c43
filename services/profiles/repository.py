"""SQL for enrolments and offboardings (schema `profiles`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

import asyncpg

from services.profiles.domain import EnrolmentRow

# The rows come as one JSON array: each the canonical payload of the registration (see
# EnrolmentRow.updated_data, serialised once for the event anyway) plus the tenant and the
# event's id. PostgreSQL reads the columns by name; the payload's extra fields are ignored.
# Sixteen column arrays cost the Python side more than the rest of the statement.
_UPSERT = """
INSERT INTO enrolments AS e (
    tenant_id, program_id, person_id, role, display_name, email, languages, timezone,
    department, seniority, manager_id, expertise, goals, capacity, event_time, event_id)
SELECT n.tenant_id, n.program_id, n.person_id, n.role, n.display_name, n.email, n.languages,
       n.timezone, n.department, n.seniority, n.manager_id, COALESCE(n.expertise, '[]'),
       COALESCE(n.goals, '[]'), COALESCE(n.capacity, 0), n.registered_at, n.event_id
FROM jsonb_to_recordset($1::text::jsonb) AS n(
    tenant_id text, program_id text, person_id text, role text, display_name text, email text,
    languages text[], timezone text, department text, seniority int, manager_id text,
    expertise jsonb, goals jsonb, capacity int, registered_at timestamptz, event_id text)
LEFT JOIN offboardings o ON o.tenant_id = n.tenant_id AND o.person_id = n.person_id
WHERE o.offboarded_at IS NULL OR o.offboarded_at < n.registered_at
ON CONFLICT (tenant_id, person_id, program_id) DO UPDATE SET
    role = EXCLUDED.role, display_name = EXCLUDED.display_name, email = EXCLUDED.email,
    languages = EXCLUDED.languages, timezone = EXCLUDED.timezone,
    department = EXCLUDED.department, seniority = EXCLUDED.seniority,
    manager_id = EXCLUDED.manager_id, expertise = EXCLUDED.expertise, goals = EXCLUDED.goals,
    capacity = EXCLUDED.capacity, event_time = EXCLUDED.event_time, event_id = EXCLUDED.event_id
WHERE (e.event_time, e.event_id) < (EXCLUDED.event_time, EXCLUDED.event_id)
RETURNING event_id
"""
_text = json.JSONEncoder(ensure_ascii=False).encode


async def upsert_enrolments(
    conn: asyncpg.Connection, rows: Sequence[tuple[EnrolmentRow, str]]
) -> set[str]:
    """Store the rows that are newer than what is stored; returns the ids of their events.
    Each row comes with its canonical payload (`EnrolmentRow.updated_data`)."""
    if not rows:
        return set()
    batch = ",".join(
        f'{data[:-1]},"tenant_id":{_text(row.tenant_id)},"event_id":{_text(row.cause.id)}}}'
        for row, data in rows
    )
    stored = await conn.fetch(_UPSERT, f"[{batch}]")
    return {r["event_id"] for r in stored}


async def offboard(
    conn: asyncpg.Connection, tenant_id: str, person_id: str, at: datetime
) -> list[str]:
    """Erase the person's enrolments older than `at`; returns the programs they left."""
    await conn.execute(
        """INSERT INTO offboardings (tenant_id, person_id, offboarded_at) VALUES ($1, $2, $3)
           ON CONFLICT (tenant_id, person_id)
           DO UPDATE SET offboarded_at = GREATEST(offboardings.offboarded_at, EXCLUDED.offboarded_at)""",
        tenant_id,
        person_id,
        at,
    )
    rows = await conn.fetch(
        """DELETE FROM enrolments WHERE tenant_id = $1 AND person_id = $2 AND event_time < $3
           RETURNING program_id""",
        tenant_id,
        person_id,
        at,
    )
    return sorted(r["program_id"] for r in rows)
