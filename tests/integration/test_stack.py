"""The Docker-free local stack: real Kafka, PostgreSQL and mail catcher come up, work, and go away.

Runs on a temporary home and free ports, so it never touches a developer's own stack.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import smtplib
import time
from collections.abc import Iterator
from email.message import EmailMessage

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from shared.local.stack import (
    StackConfig,
    down,
    start_component,
    start_infra,
    status,
    stop_component,
)
from tests.support import free_ports, port_open
from tests.support.host import alive, processes_mentioning, scratch_home

pytestmark = pytest.mark.integration


@pytest.fixture
def cfg() -> Iterator[StackConfig]:
    home = scratch_home("mentornet-stack-")
    kafka, controller, pg, smtp, *http = free_ports(7)
    config = StackConfig(
        home=home,
        kafka_port=kafka,
        controller_port=controller,
        pg_port=pg,
        smtp_port=smtp,
        profiles_port=http[0],
        matching_port=http[1],
        notifications_port=http[2],
    )
    yield config
    down(config)  # safety net if the test failed half-way
    shutil.rmtree(home, ignore_errors=True)


async def _roundtrip(cfg: StackConfig, topic: str, value: bytes) -> bytes:
    producer = AIOKafkaProducer(bootstrap_servers=cfg.bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=cfg.bootstrap_servers,
        group_id=f"smoke-{time.time_ns()}",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        while True:
            record = await asyncio.wait_for(consumer.getone(), timeout=30)
            if record.value == value:
                return record.value
    finally:
        await consumer.stop()


async def test_infra_starts_works_restarts_and_stops_cleanly(cfg: StackConfig) -> None:
    await start_infra(cfg)
    state = json.loads(cfg.state_file.read_text())
    assert set(state) == {"kafka", "postgres", "mailcatcher"}
    assert all(s.running for s in status(cfg) if s.name in state)

    # up is idempotent: a second call starts nothing new
    await start_infra(cfg, provision=False)
    assert {n: e["pid"] for n, e in json.loads(cfg.state_file.read_text()).items()} == {
        n: e["pid"] for n, e in state.items()
    }

    admin = AIOKafkaAdminClient(bootstrap_servers=cfg.bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic("stack-smoke", num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    assert await _roundtrip(cfg, "stack-smoke", b"hello") == b"hello"

    conn = await asyncpg.connect(cfg.database_url)
    try:
        assert await conn.fetchval("SELECT 1") == 1
        assert await conn.fetchval("SELECT current_user") == "mentornet"
    finally:
        await conn.close()

    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "a@example.org", "b@example.org", "Hi"
    message.set_content("caught")
    with smtplib.SMTP("127.0.0.1", cfg.smtp_port, timeout=10) as smtp:
        smtp.send_message(message, to_addrs=["b@example.org", "hidden@example.org"])
    (eml,) = cfg.mail_dir.glob("*.eml")
    assert b"X-Envelope-To: b@example.org, hidden@example.org" in eml.read_bytes()
    assert b"caught" in eml.read_bytes()

    # the fault suites stop and restart single components; data survives a broker restart
    assert stop_component(cfg, "kafka")
    assert not port_open(cfg.kafka_port)
    await start_component(cfg, "kafka")
    assert await _roundtrip(cfg, "stack-smoke", b"again") == b"again"
    assert stop_component(cfg, "postgres", kill=True)
    await start_component(cfg, "postgres")
    conn = await asyncpg.connect(cfg.database_url)
    await conn.close()

    pids = [e["pid"] for e in json.loads(cfg.state_file.read_text()).values()]
    assert sorted(down(cfg)) == ["kafka", "mailcatcher", "postgres"]
    assert not cfg.state_file.exists() or json.loads(cfg.state_file.read_text()) == {}
    assert [p for p in pids if alive(p)] == []
    assert processes_mentioning(str(cfg.home)) == []
    ports = [cfg.kafka_port, cfg.controller_port, cfg.pg_port, cfg.smtp_port]
    assert [p for p in ports if port_open(p)] == []
    assert not any(s.running for s in status(cfg))
