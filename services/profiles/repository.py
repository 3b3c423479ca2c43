"""SQL for enrolments and offboardings (schema `profiles`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

import asyncpg

from services.profiles.domain import EnrolmentRow
from shared.runtime.db.columns import columns

_UPSERT = """
INSERT INTO enrolments AS e (
    tenant_id, program_id, person_id, role, display_name, email, languages, timezone,
    department, seniority, manager_id, expertise, goals, capacity, event_time, event_id)
SELECT n.tenant_id, n.program_id, n.person_id, n.role, n.display_name, n.email,
       n.languages::text[], n.timezone, n.department, n.seniority, n.manager_id, n.expertise::jsonb,
       n.goals::jsonb, n.capacity, n.event_time, n.event_id
FROM unnest(
    $1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
    $8::text[], $9::text[], $10::int[], $11::text[], $12::text[], $13::text[], $14::int[],
    $15::timestamptz[], $16::text[]
) AS n(tenant_id, program_id, person_id, role, display_name, email, languages, timezone,
       department, seniority, manager_id, expertise, goals, capacity, event_time, event_id)
LEFT JOIN offboardings o ON o.tenant_id = n.tenant_id AND o.person_id = n.person_id
WHERE o.offboarded_at IS NULL OR o.offboarded_at < n.event_time
ON CONFLICT (tenant_id, person_id, program_id) DO UPDATE SET
    role = EXCLUDED.role, display_name = EXCLUDED.display_name, email = EXCLUDED.email,
    languages = EXCLUDED.languages, timezone = EXCLUDED.timezone,
    department = EXCLUDED.department, seniority = EXCLUDED.seniority,
    manager_id = EXCLUDED.manager_id, expertise = EXCLUDED.expertise, goals = EXCLUDED.goals,
    capacity = EXCLUDED.capacity, event_time = EXCLUDED.event_time, event_id = EXCLUDED.event_id
WHERE (e.event_time, e.event_id) < (EXCLUDED.event_time, EXCLUDED.event_id)
RETURNING event_id
"""


async def upsert_enrolments(conn: asyncpg.Connection, rows: Sequence[EnrolmentRow]) -> set[str]:
    """Store the rows that are newer than what is stored; returns the ids of their events."""
    if not rows:
        return set()

    def values(row: EnrolmentRow) -> tuple[object, ...]:
        r = row.registration
        return (
            row.tenant_id,
            r.program_id,
            r.person_id,
            row.role,
            r.display_name,
            r.email,
            "{" + ",".join(r.languages) + "}",
            r.timezone,
            r.department,
            r.seniority,
            r.manager_id,
            json.dumps([e.model_dump() for e in getattr(r, "expertise", [])]),
            json.dumps([g.model_dump() for g in getattr(r, "goals", [])]),
            getattr(r, "capacity", 0),
            row.cause.time,
            row.cause.id,
        )

    stored = await conn.fetch(_UPSERT, *columns(map(values, rows), 16))
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
