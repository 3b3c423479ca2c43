"""Inbox: remember handled event ids in the same transaction as their effect."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from shared.contract.envelope import CloudEvent
from shared.runtime.db.columns import columns


async def first_seen(conn: asyncpg.Connection, events: Sequence[CloudEvent]) -> set[str]:
    """Record the events and return the ids never handled before (the others are duplicates)."""
    if not events:
        return set()
    rows = await conn.fetch(
        """INSERT INTO inbox (tenant_id, source, event_id)
           SELECT * FROM unnest($1::text[], $2::text[], $3::text[])
           ON CONFLICT DO NOTHING RETURNING event_id""",
        *columns(((e.tenantid, e.source, e.id) for e in events), 3),
    )
    return {r["event_id"] for r in rows}
