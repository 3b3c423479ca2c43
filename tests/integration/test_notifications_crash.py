"""SIGKILL the notifications service in the middle of 10,000 deliveries, start it again, and
check that nothing is lost and that what was sent twice is the same message.

The kill lands between "the SMTP server accepted it" and "the outcome was written" for the
sends in flight; those rows come back when their lease ends and are sent again with the same
Message-ID, so a receiver can drop them. Their number is bounded by what can be in flight.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid
from datetime import timedelta

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.local.infra import Endpoints
from shared.local.sinks import Pending, SmtpSink, seed_proposals
from tests.support import ServiceProcess, end_offsets, free_port, pool_fixture

pytestmark = [pytest.mark.integration, pytest.mark.fault]

TOTAL = 10_000
CONCURRENCY = 64
LEASE = 4.0


@pool_fixture("module", max_size=2, search_path="notifications")
def db(infra: Endpoints) -> str:
    """This module's own pool: notifications' schema first (overrides the session `db`)."""
    return infra.database_url


def notifications(infra: Endpoints, smtp: SmtpSink, tenant: str, http_port: int) -> ServiceProcess:
    return ServiceProcess(
        "notifications",
        {
            "KAFKA_BOOTSTRAP_SERVERS": infra.bootstrap_servers,
            "DATABASE_URL": infra.database_url,
            "LOG_LEVEL": "WARNING",
            "CONSUMER_GROUP": "notifications-tests",
            **smtp.env(),
            "SMTP_STARTTLS": "false",
            "SMTP_TIMEOUT": "1",
            "WEBHOOK_TIMEOUT": "1",
            "SMTP_RATE_PER_SECOND": "0",
            "DELIVERY_CONCURRENCY": str(CONCURRENCY),
            "DELIVERY_LEASE_SECONDS": str(LEASE),
            "DELIVERY_TENANTS": json.dumps([tenant]),
        },
        port=http_port,
    )


async def seed(pool: asyncpg.Pool, tenant: str) -> set[str]:
    """TOTAL proposal emails, due now; returns their Message-IDs."""
    pending = [Pending(tenant, f"p{i}", f"crash-{i}") for i in range(TOTAL)]
    ids = await seed_proposals(pool, pending, give_up_after=timedelta(hours=1))
    return {f"<{nid}@mentornet>" for nid in ids}


async def delivered_events(
    bootstrap: str, tenant: str, start: dict[TopicPartition, int]
) -> set[str]:
    """The distinct notification ids announced on notification-delivered since `start`."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(list(start))
        consumer.assign(list(start))
        for tp, offset in start.items():
            consumer.seek(tp, offset)
        found: set[str] = set()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            behind = [tp for tp in start if await consumer.position(tp) < ends[tp]]
            if not behind:
                break
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    event = json.loads(record.value)
                    if event["tenantid"] == tenant:
                        found.add(event["data"]["notification_id"])
        return found
    finally:
        await consumer.stop()


@pytest.mark.timeout(600)
async def test_sigkill_during_10000_deliveries_loses_nothing(
    infra: Endpoints, smtp: SmtpSink, db: asyncpg.Pool
) -> None:
    tenant = f"t-crash-{uuid.uuid4().hex[:10]}"
    port = free_port()
    delivered_from = await end_offsets(infra.bootstrap_servers, ["notification-delivered"])
    expected = await seed(db, tenant)

    first = notifications(infra, smtp, tenant, port)
    first.start()
    try:
        await first.wait_ready()
        deadline = time.monotonic() + 120
        while sum(smtp.counts.values()) < TOTAL * 0.3:
            assert time.monotonic() < deadline, "deliveries did not start"
            await asyncio.sleep(0.05)
    finally:
        first.stop(signal.SIGKILL)
    await asyncio.sleep(0.3)  # let the sink finish what was already on the wire
    received_at_kill = sum(smtp.counts.values())
    recorded_at_kill = await db.fetchval(
        "SELECT count(*) FROM deliveries WHERE tenant_id = $1 AND state = 'sent'", tenant
    )
    assert 0 < received_at_kill < TOTAL

    second = notifications(infra, smtp, tenant, port)
    second.start()
    try:
        await second.wait_ready()
        deadline = time.monotonic() + 300
        while (
            await db.fetchval(
                "SELECT count(*) FROM deliveries WHERE tenant_id = $1 AND state = 'sent'", tenant
            )
            < TOTAL
        ):
            assert time.monotonic() < deadline, "the restarted service did not finish"
            await asyncio.sleep(0.5)
        await asyncio.sleep(1.0)
    finally:
        second.stop()

    counts = dict(smtp.counts)
    assert set(counts) >= expected  # nothing lost
    duplicates = {message_id: n for message_id, n in counts.items() if n > 1}
    print(  # for the record: how wide the crash window was
        f"killed after {received_at_kill} accepted, {recorded_at_kill} recorded; "
        f"{len(duplicates)} sent twice"
    )
    # only what was accepted but not yet recorded at the kill, each resent once, same Message-ID
    assert all(n == 2 for n in duplicates.values()), duplicates
    assert len(duplicates) <= received_at_kill - recorded_at_kill
    assert len(duplicates) <= 2 * CONCURRENCY
    # every delivery is announced once: the outcome and its event share a transaction
    await asyncio.sleep(2.0)  # the relay of the restarted service publishes the last batch
    assert len(await delivered_events(infra.bootstrap_servers, tenant, delivered_from)) == TOTAL
    await db.execute("DELETE FROM deliveries WHERE tenant_id = $1", tenant)
    await db.execute("DELETE FROM contacts WHERE tenant_id = $1", tenant)
