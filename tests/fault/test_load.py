"""Sustained load: a steady mixed stream for MENTORNET_LOAD_SECONDS (default 60) at
MENTORNET_LOAD_RATE events per second (default 100); memory stays bounded and the consumers
catch up completely afterwards.

The several-minute run: `MENTORNET_LOAD_SECONDS=300 make test`, or
`MENTORNET_LOAD_SECONDS=300 .venv/bin/python -m pytest tests/fault/test_load.py -q`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from typing import Any

import asyncpg
import pytest

from services.registry import NAMES
from shared.local.sinks import SmtpSink
from tests.support import end_offsets
from tests.support.fault import (
    DEAD_LETTER_TOPICS,
    FaultStack,
    Publisher,
    consumer_lag,
    fault_services,
    group_topics,
    read_dead_letters,
    record_results,
    refused_events,
    rss_bytes,
    wait_lag_zero,
)
from tests.support.world import APP_SOURCE, HR_SOURCE, Responder, World, publish_paced

pytestmark = pytest.mark.fault

SECONDS = float(os.environ.get("MENTORNET_LOAD_SECONDS", 60))
RATE = float(os.environ.get("MENTORNET_LOAD_RATE", 100))
MIB = 1024 * 1024
RSS_GROWTH, RSS_SLACK = 1.3, 16 * MIB  # last third's peak vs first third's peak
REGISTER_BY = 0.25  # everyone has registered within the first quarter of the stream


def sized_world(total: int) -> tuple[World, int, int, int]:
    """A population whose HR stream has about `total` events: a tenth registrations (a third of
    them mentors, all within the first quarter of the stream, so the data set stops growing),
    the rest mostly updates, a few offboardings and invalid records."""
    registrations = max(60, min(total // 10, 3000))
    tenants, programs = 2, 3
    per_tenant = registrations // tenants
    world = World(
        "load",
        tenants=tenants,
        programs=programs,
        mentors=per_tenant // 3,
        mentees=per_tenant - per_tenant // 3,
        seed=77,
    )
    offboardings, invalid = total // 50, total // 33
    updates = max(0, total - registrations - offboardings - invalid)
    return world, updates, offboardings, invalid


def thirds(samples: list[tuple[float, int]]) -> tuple[int, int]:
    """Peak RSS in the first and in the last third of the samples."""
    n = len(samples)
    first = max(v for _, v in samples[: max(1, n // 3)])
    last = max(v for _, v in samples[n - max(1, n // 3) :])
    return first, last


@pytest.mark.timeout(int(SECONDS) + 300)
async def test_a_steady_stream_keeps_memory_bounded_and_lag_returns_to_zero(
    fault_stack: FaultStack, fault_db: asyncpg.Pool, smtp: SmtpSink
) -> None:
    began = time.monotonic()
    # About 85% of the rate is HR traffic; the apps' answers to proposals make up the rest.
    world, updates, offboardings, invalid = sized_world(int(RATE * SECONDS * 0.85))
    planned = world.program_configs() + world.hr_stream(
        updates, offboardings, invalid, register_by=REGISTER_BY
    )
    env = fault_stack.service_env(**smtp.env())
    services = fault_services("load")
    for name in NAMES:
        services.add(name, name, env)
    responder = Responder(
        world, fault_stack.bootstrap, await end_offsets(fault_stack.bootstrap, Responder.TOPICS)
    )
    publisher = Publisher(fault_stack.bootstrap)
    dlq_start = await end_offsets(fault_stack.bootstrap, DEAD_LETTER_TOPICS)
    rss: dict[str, list[tuple[float, int]]] = {name: [] for name in services.procs}
    lag_seen: list[tuple[float, int]] = []

    async def sample() -> None:
        tick = 0
        while True:
            for name, proc in services.procs.items():
                if proc.process and (value := rss_bytes(proc.process.pid)) is not None:
                    rss[name].append((time.monotonic(), value))
            if tick % 5 == 0:
                with contextlib.suppress(Exception):
                    lag = await consumer_lag(fault_stack.bootstrap, group_topics())
                    lag_seen.append((time.monotonic(), sum(lag.values())))
            tick += 1
            await asyncio.sleep(1.0)

    sampler: asyncio.Task[None] | None = None
    figures: dict[str, Any] = {}
    try:
        await services.start()
        responder.start()
        sampler = asyncio.create_task(sample())
        stream_seconds = await publish_paced(publisher, planned, len(planned) / SECONDS)
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
        caught_up_started = time.monotonic()
        deadline = caught_up_started + 120
        refused: set[tuple[str, str]] = set()  # valid app events matching refused (no inbox row)
        while time.monotonic() < deadline:
            hr = await fault_db.fetchval(
                "SELECT count(*) FROM profiles.inbox WHERE tenant_id = ANY($1) AND source = $2",
                world.tenants,
                HR_SOURCE,
            )
            app = await fault_db.fetchval(
                "SELECT count(*) FROM matching.inbox WHERE tenant_id = ANY($1) AND source = $2",
                world.tenants,
                APP_SOURCE,
            )
            quiet = time.monotonic() - world.last_proposal_at > 3
            if hr == len(world.valid_hr) and app < len(world.valid_app) and quiet:
                # an answer to a match an offboarding closed is refused: a dead letter, no row
                letters = await read_dead_letters(fault_stack.bootstrap, dlq_start)
                refused = refused_events(letters, world.valid_app)
            if hr == len(world.valid_hr) and app + len(refused) == len(world.valid_app) and quiet:
                break
            await asyncio.sleep(0.5)
        lag, lag_wait = await wait_lag_zero(fault_stack.bootstrap, group_topics(), timeout=60)
        catch_up = time.monotonic() - caught_up_started
        alive = services.alive()
        memory = {}
        for name, samples in rss.items():
            first, last = thirds(samples)
            memory[name] = {
                "first_third_peak_mib": round(first / MIB, 1),
                "last_third_peak_mib": round(last / MIB, 1),
                "bounded": last <= RSS_GROWTH * first + RSS_SLACK,
            }
        figures = {
            "seconds": SECONDS,
            "target_rate_events_per_s": RATE,
            "events_sent": {
                "hr_valid": len(world.valid_hr),
                "hr_invalid": len(world.invalid),
                "app": len(world.valid_app),
                "total": len(world.valid_hr) + len(world.invalid) + len(world.valid_app),
            },
            "achieved_rate_events_per_s": round(
                (len(planned) + responder.published) / stream_seconds, 1
            ),
            "max_consumer_lag_during_stream": max((v for _, v in lag_seen), default=0),
            "catch_up_after_stream_s": round(catch_up, 1),
            "consumer_lag_left": sum(lag.values()),
            "lag_to_zero_s": round(lag_wait, 1),
            "proposals": len(world.proposals),
            "emails_received": sum(smtp.counts.values()),
            "memory": memory,
            "services_alive": alive,
            "durations_s": {
                "stream": round(stream_seconds, 1),
                "total": round(time.monotonic() - began, 1),
            },
        }
    finally:
        if sampler is not None:
            sampler.cancel()
        await responder.stop()
        await publisher.close()
        await services.stop_all()
        if figures:
            record_results("load", figures)

    assert all(alive.values()), alive
    assert stream_seconds < SECONDS * 1.1, "the publisher could not hold the rate"
    assert sum(lag.values()) == 0, f"consumer lag left: {lag}"
    assert hr == len(world.valid_hr), "HR events not applied"
    assert app + len(refused) == len(world.valid_app), "app events neither applied nor answered"
    for name, m in memory.items():
        assert m["bounded"], (
            f"{name}: memory grew from {m['first_third_peak_mib']} MiB to {m['last_third_peak_mib']} MiB"
        )
