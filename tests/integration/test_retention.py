"""Housekeeping against the real database: what only serves to recognise replays is purged once
no replay can come (RETENTION_DAYS), and nothing else is touched."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from shared.local.infra import Endpoints
from tests.support import ServiceProcess, fresh_group, unique, wait_for

pytestmark = pytest.mark.integration


async def test_notifications_purges_old_inbox_rows_and_finished_deliveries(
    infra: Endpoints, db: asyncpg.Pool, service_env: dict[str, str]
) -> None:
    tenant, now = unique("retention"), datetime.now(UTC)
    old, recent = now - timedelta(days=50), now - timedelta(days=10)
    for event_id, handled_at in (("old-event", old), ("recent-event", recent)):
        await db.execute(
            "INSERT INTO notifications.inbox (tenant_id, source, event_id, handled_at) VALUES ($1, 'hr', $2, $3)",
            tenant,
            event_id,
            handled_at,
        )
    for name, state, created_at in (
        ("old-sent", "sent", old),
        ("old-failed", "failed", old),
        ("old-pending", "pending", old),  # still to deliver: never purged
        ("recent-sent", "sent", recent),
    ):
        await db.execute(
            """INSERT INTO notifications.deliveries (id, tenant_id, source_event_id, recipient_id,
                   channel, kind, category, context, state, next_attempt_at, give_up_at, created_at)
               VALUES ($1, $2, $3, 'p-1', 'email', 'match-proposed', 'matches', $4, $5, $6, $6, $6)""",
            uuid.uuid4(),
            tenant,
            name,
            json.dumps({}),
            state,
            created_at,
        )
    env = {
        **service_env,
        "CONSUMER_GROUP": await fresh_group(infra.bootstrap_servers, "notifications", "retention"),
        "DELIVERY_TENANTS": json.dumps([unique("nobody")]),  # the worker leaves these rows alone
        "RETENTION_DAYS": "45",
    }
    service = ServiceProcess("notifications", env)
    service.start()
    try:
        await service.wait_ready()
        await wait_for(  # housekeeping runs at startup, then hourly
            db,
            "SELECT count(*) = 0 FROM notifications.inbox WHERE tenant_id = $1 AND event_id = 'old-event'",
            tenant,
        )
        await wait_for(
            db,
            "SELECT count(*) = 2 FROM notifications.deliveries WHERE tenant_id = $1",
            tenant,
        )
    finally:
        service.stop()
    kept = {
        r["source_event_id"]
        for r in await db.fetch(
            "SELECT source_event_id FROM notifications.deliveries WHERE tenant_id = $1", tenant
        )
    }
    assert kept == {"old-pending", "recent-sent"}
    assert await db.fetchval(
        "SELECT array_agg(event_id) FROM notifications.inbox WHERE tenant_id = $1", tenant
    ) == ["recent-event"]
