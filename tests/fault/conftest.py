"""The fault layer's own infrastructure.

`fault_stack` starts a dedicated Kafka and PostgreSQL (the local stack under `.stack/fault`, on
free ports, no mail catcher) once per session, so the suites can kill the broker and restart the
database without touching the stack other tests use; it stops them at the end. The suites' tools
are in tests/support/fault.py and tests/support/world.py.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator

import pytest

from shared.contract.topics import TOPICS
from shared.local.kafka import topic_partitions
from shared.local.probes import free_ports
from shared.local.stack import REPO_ROOT, StackConfig, down, quiet, start_infra, status
from tests.support import pool_fixture
from tests.support.fault import FaultStack


@pytest.fixture(scope="session")
async def fault_stack() -> AsyncIterator[FaultStack]:
    """Kafka and PostgreSQL of the fault layer alone, fresh for every session."""
    kafka, controller, pg = free_ports(3)
    cfg = StackConfig(
        home=REPO_ROOT / ".stack" / "fault",
        kafka_port=kafka,
        controller_port=controller,
        pg_port=pg,
        with_mailcatcher=False,
    )
    if any(c.running for c in status(cfg)):  # a run that was interrupted left it up
        down(cfg, on_step=quiet)
    for stale in ("kafka", "pgdata", "run", "stack.json"):  # fresh data: ports change each run
        path = cfg.home / stale
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    try:
        await start_infra(cfg, provision=True, on_step=quiet)
        await topics_described(cfg.bootstrap_servers)
        yield FaultStack(cfg)
    finally:
        down(cfg, on_step=quiet)


async def topics_described(bootstrap: str, timeout: float = 30.0) -> None:
    """Wait until the broker describes every topic just created: right after the creation its
    metadata may still miss the last ones, and a suite reading them would fail at once."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            await topic_partitions(bootstrap, TOPICS)
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


# min_size=0: no reconnect attempts (and warnings) of its own while PostgreSQL restarts
@pool_fixture("session", min_size=0)
def fault_db(fault_stack: FaultStack) -> str:
    return fault_stack.database_url
