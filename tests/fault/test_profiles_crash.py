"""Crash: SIGKILL profiles in the middle of a 20,000-event HR sync, restart it, lose nothing."""

from __future__ import annotations

import asyncio
import json
import signal

import asyncpg
import pytest

from shared.local.infra import Endpoints
from shared.local.simulation import Population
from tests.support import (
    ServiceProcess,
    TopicReader,
    of_tenant,
    outbox_drained,
    publish_raw,
    unique,
    wait_for,
)

pytestmark = pytest.mark.fault
EVENTS = 20_000


async def test_sigkill_mid_stream_loses_nothing_and_stores_everything_once(
    infra: Endpoints, db: asyncpg.Pool, service_env: dict[str, str]
) -> None:
    tenant = unique("crash")
    records = list(
        Population(tenant, programs=50, seed=5).registrations(EVENTS // 3, EVENTS - EVENTS // 3)
    )
    group = {"CONSUMER_GROUP": unique("crash-group"), "BATCH_MAX_RECORDS": "500"}
    first = ServiceProcess("profiles", {**service_env, **group})
    async with TopicReader(infra.bootstrap_servers, "enrolment-updated") as reader:
        first.start()
        await first.wait_ready()
        publishing = asyncio.create_task(
            publish_raw(infra.bootstrap_servers, ((r.topic, r.key, r.value) for r in records))
        )
        await wait_for(
            db,
            "SELECT count(*) > 4000 FROM profiles.enrolments WHERE tenant_id = $1",
            tenant,
            timeout=120,
        )
        assert first.stop(signal.SIGKILL) == -signal.SIGKILL
        stored_at_kill = await db.fetchval(
            "SELECT count(*) FROM profiles.enrolments WHERE tenant_id = $1", tenant
        )
        await publishing

        second = ServiceProcess("profiles", {**service_env, **group})
        second.start()
        try:
            await wait_for(
                db,
                "SELECT count(*) = $2 FROM profiles.enrolments WHERE tenant_id = $1",
                tenant,
                EVENTS,
                timeout=180,
            )
            await outbox_drained(db, "profiles")
            published = await reader.collect(
                lambda rs: len({json.loads(r.value)["data"]["person_id"] for r in rs}) >= EVENTS,
                keep=of_tenant(tenant),
                timeout=120,
            )
        finally:
            second.stop()
    assert stored_at_kill < EVENTS, "the kill happened mid-stream"
    ids = [json.loads(r.value)["id"] for r in published]
    people = {json.loads(r.value)["data"]["person_id"] for r in published}
    assert len(people) == EVENTS, "every enrolment's canonical event was published"
    assert len(set(ids)) == EVENTS, "a republished event carries the same id (consumers drop it)"
    inbox = await db.fetchval("SELECT count(*) FROM profiles.inbox WHERE tenant_id = $1", tenant)
    assert inbox == EVENTS, "each HR event applied exactly once"
