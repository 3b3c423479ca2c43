"""Inbox: remember handled event ids in the same transaction as their effect.

An event is known by its full key, (tenant, source, id): two tenants (or two sources) may use
one id, and neither may suppress the other's event.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from shared.contract.envelope import CloudEvent
from shared.runtime.db.columns import columns

EventKey = tuple[str, str, str]  # (tenant_id, source, event_id)


def key_of(event: CloudEvent) -> EventKey:
    return (event.tenantid, event.source, event.id)


async def first_seen(conn: asyncpg.Connection, events: Sequence[CloudEvent]) -> set[EventKey]:
    """Record the events and return the keys never handled before (the others are duplicates)."""
    if not events:
        return set()
    rows = await conn.fetch(
        """INSERT INTO inbox (tenant_id, source, event_id)
           SELECT * FROM unnest($1::text[], $2::text[], $3::text[])
           ON CONFLICT DO NOTHING RETURNING tenant_id, source, event_id""",
        *columns((key_of(e) for e in events), 3),
    )
    return {(r["tenant_id"], r["source"], r["event_id"]) for r in rows}


async def forget(conn: asyncpg.Connection, event: CloudEvent) -> None:
    """Un-record an event whose effect was refused (answered with a dead letter), in the same
    transaction: once the cause is fixed, a replay of it from the dead-letter topic is applied."""
    await conn.execute(
        "DELETE FROM inbox WHERE tenant_id = $1 AND source = $2 AND event_id = $3",
        *key_of(event),
    )
