"""Crash: SIGKILL profiles in the middle of a 20,000-event HR sync, restart it, lose nothing and
apply nothing twice.

The restarted process joins a fresh consumer group, as if the crash had also lost the group's
committed offsets: everything the first process handled comes again, not only what followed its
last commit (a window too small to be hit reliably). Only profiles' own records (consumed offsets,
inbox) may keep it from applying those again.

The inbox and the enrolments have primary keys, so their row counts cannot show a double
application. What can is profiles' outbox: each applied registration writes exactly one canonical
`enrolment-updated` there, in its transaction. The outbox is emptied as it is relayed, so a trigger
of the test's own keeps a note of every row committed to it (on the fault layer's own database,
removed at the end). Read back from Kafka, every registration (by `correlationid`) must have one
canonical event, with the data sent; copies of it on the topic can only be the relay's documented
republish after the kill (same id, same bytes).
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from aiokafka import TopicPartition

from shared.local.simulation import Population
from tests.support import (
    ServiceProcess,
    TopicReader,
    end_offsets,
    outbox_drained,
    publish_raw,
    unique,
    wait_for,
)
from tests.support.fault import FaultStack

pytestmark = pytest.mark.fault
EVENTS = 20_000
TOPIC = "enrolment-updated"
RELAY_BATCH = 2_000  # the outbox relay's batch: what one kill between publish and delete repeats

AUDIT = """
CREATE SCHEMA IF NOT EXISTS crash_audit;
CREATE TABLE IF NOT EXISTS crash_audit.enrolment_updates (
    outbox_id bigint PRIMARY KEY, tenant_id text, event_id text, correlation_id text);
CREATE OR REPLACE FUNCTION crash_audit.note() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE body jsonb := convert_from(NEW.value, 'UTF8')::jsonb;
BEGIN
    INSERT INTO crash_audit.enrolment_updates
    VALUES (NEW.id, body->>'tenantid', body->>'id', body->>'correlationid');
    RETURN NULL;
END $$;
CREATE TRIGGER crash_audit AFTER INSERT ON profiles.outbox FOR EACH ROW
    WHEN (NEW.topic = 'enrolment-updated') EXECUTE FUNCTION crash_audit.note();
"""


@pytest.fixture
async def outbox_audit(fault_db: asyncpg.Pool) -> AsyncIterator[asyncpg.Pool]:
    """Every row committed to profiles' outbox for `enrolment-updated`, kept while the test runs."""
    await fault_db.execute("DROP SCHEMA IF EXISTS crash_audit CASCADE")
    await fault_db.execute(AUDIT)
    try:
        yield fault_db
    finally:
        await fault_db.execute("DROP SCHEMA IF EXISTS crash_audit CASCADE")  # the trigger too


async def read_to(reader: TopicReader, ends: dict[TopicPartition, int]) -> list[Any]:
    """Every record from the reader's start to `ends`: copies included, none left behind."""
    assert reader.consumer is not None
    found: list[Any] = []
    deadline = time.monotonic() + 120
    while any([await reader.consumer.position(tp) < end for tp, end in ends.items()]):
        assert time.monotonic() < deadline, f"{TOPIC} not read to its end"
        found += await reader.drain(0.2)
    return found


def canonical_check(
    sent: dict[str, dict[str, Any]], published: list[Any], written: Counter[str]
) -> dict[str, int]:
    """What profiles did with each registration (by id), as its outbox and its topic say."""
    events: dict[str, set[str]] = defaultdict(set)  # registration id -> canonical event ids
    copies: Counter[str] = Counter()  # canonical event id -> records on the topic
    values: dict[str, set[bytes]] = defaultdict(set)
    wrong_data = 0
    for record in published:
        event = json.loads(record.value)
        cause = event.get("correlationid")
        events[cause].add(event["id"])
        copies[event["id"]] += 1
        values[event["id"]].add(record.value)
        registration = sent.get(cause)
        data = event["data"]
        wrong_data += registration is None or any(
            data.get(k) != registration[k] for k in ("person_id", "program_id", "display_name")
        )
    return {
        "registrations_without_canonical_event": len(sent.keys() - events.keys()),
        "canonical_events_of_nothing_sent": len(events.keys() - sent.keys()),
        "registrations_with_two_canonical_events": sum(
            1 for ids in events.values() if len(ids) > 1
        ),
        "canonical_events_not_as_sent": wrong_data,
        "copies_that_differ": sum(1 for v in values.values() if len(v) > 1),
        "outbox_rows_missing": sum(1 for r in sent if written[r] == 0),
        "outbox_rows_twice": sum(1 for r in sent if written[r] > 1),
        "outbox_rows_of_nothing_sent": len(written.keys() - sent.keys()),
        "_relayed_again": sum(n - 1 for n in copies.values()),  # the documented window
    }


async def test_sigkill_mid_stream_loses_nothing_and_applies_everything_once(
    fault_stack: FaultStack, outbox_audit: asyncpg.Pool
) -> None:
    db = outbox_audit
    tenant = unique("crash")
    records = list(
        Population(tenant, programs=50, seed=5).registrations(EVENTS // 3, EVENTS - EVENTS // 3)
    )
    sent = {r.event_id: dict(r.data) for r in records if r.event_id}
    env = {**fault_stack.service_env(), "BATCH_MAX_RECORDS": "500"}
    first = ServiceProcess("profiles", {**env, "CONSUMER_GROUP": unique("crash-group")})
    async with TopicReader(fault_stack.bootstrap, TOPIC) as reader:
        first.start()
        await first.wait_ready()
        publishing = asyncio.create_task(
            publish_raw(fault_stack.bootstrap, ((r.topic, r.key, r.value) for r in records))
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

        second = ServiceProcess("profiles", {**env, "CONSUMER_GROUP": unique("crash-group")})
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
            published = await read_to(reader, await end_offsets(fault_stack.bootstrap, [TOPIC]))
        finally:
            second.stop()
    ours = [r for r in published if json.loads(r.value).get("tenantid") == tenant]
    written = Counter(
        r["correlation_id"]
        for r in await db.fetch(
            "SELECT correlation_id FROM crash_audit.enrolment_updates WHERE tenant_id = $1", tenant
        )
    )
    inbox = await db.fetchval("SELECT count(*) FROM profiles.inbox WHERE tenant_id = $1", tenant)
    check = canonical_check(sent, ours, written)
    print(f"\nprofiles crash: stored at the kill {stored_at_kill}, inbox {inbox}, {check}")

    assert stored_at_kill < EVENTS, "the kill happened mid-stream"
    assert inbox == EVENTS, "every HR event is in the inbox"
    relayed_again = check.pop("_relayed_again")
    assert not any(check.values()), f"not applied exactly once: {check}"
    assert relayed_again <= RELAY_BATCH, f"{relayed_again} copies: more than one relay batch"
