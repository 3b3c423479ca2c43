"""Delivery throughput of notifications: `python -m benchmarks.notify [--quick]`.

Inserts N delivery rows straight into the database (half for an email tenant, half for a
webhook tenant, each recipient with a known contact), with the real service already running
as a subprocess (`python -m services.notifications`), and times how long it takes until every
row is marked sent. So this measures the delivery path (claim, render, send over SMTP or HTTP,
record the outcome and its outbox event), not Kafka ingestion (benchmarks/ingest.py does).

The receivers are separate processes too (`python -m shared.local.sinks`): a local
aiosmtpd server and a minimal HTTP server, which count Message-IDs and Idempotency-Keys, so
duplicates are counted where they would hurt. Peak memory is the service's VmHWM. Rate limits
are off unless --rate is given. The last line printed is one JSON object.

A delivery log only grows (finished rows are purged after RETENTION_DAYS), so the run first
makes sure the database holds --delivered rows already sent to other tenants, as a service
that has been running for a while would: claiming and recording must not slow down with them.
They are written once in SQL and left in place, so later runs reuse them.

Uses KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL when set, else starts the benchmark stack.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg

from benchmarks._common import (
    arguments,
    cpu_seconds,
    database_cpu_seconds,
    emit,
    machine,
    parent_pid,
    peak_rss_mb,
)
from shared.local.infra import Endpoints, real_infrastructure
from shared.local.kafka import fresh_group
from shared.local.probes import answers, free_ports, wait_until
from shared.local.processes import stop_process
from shared.local.sinks import Pending, seed_proposals

ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-secret"
FULL_HISTORY = 500_000  # deliveries already made, for the target


def service_env(
    args: Any, smtp_port: int, http_port: int, tenants: list[str], infra: Endpoints, group: str
) -> dict[str, str]:
    """One replica's environment; replicas share the rows through SKIP LOCKED and leases."""
    return {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "DATABASE_URL": infra.database_url,
        "KAFKA_BOOTSTRAP_SERVERS": infra.bootstrap_servers,
        "HTTP_PORT": str(http_port),
        "LOG_LEVEL": "WARNING",
        "CONSUMER_GROUP": group,
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(smtp_port),
        "SMTP_STARTTLS": "false",
        "SMTP_CONNECTIONS": str(args.smtp_connections),
        "WEBHOOK_CONNECTIONS": str(args.webhook_connections),
        "SMTP_RATE_PER_SECOND": str(args.rate),
        "WEBHOOK_RATE_PER_SECOND": str(args.rate),
        "WEBHOOK_ALLOWED_HOSTS": '["127.0.0.1"]',  # the benchmark's own receiver, plain http
        "DELIVERY_CONCURRENCY": str(args.concurrency),
        "DELIVERY_TENANTS": json.dumps(tenants),  # leave other tenants' rows alone
    }


async def seed(pool: asyncpg.Pool, n: int, email_tenant: str, hook_tenant: str) -> list[str]:
    """Half by email, half by webhook, a third of the people in French."""
    return await seed_proposals(
        pool,
        [
            Pending(
                *((email_tenant, f"p{i}", f"bench-{i}", "email") if i % 2 == 0
                  else (hook_tenant, f"p{i}", f"bench-{i}", "webhook")),
                languages=("fr",) if i % 3 == 0 else ("en",),
            )
            for i in range(n)
        ],
        give_up_after=timedelta(days=1),
    )  # fmt: skip


HISTORY_CONTEXT = json.dumps(  # what a delivered proposal's row carries
    {
        "match_id": "m",
        "program_id": "p",
        "role": "mentee",
        "score": 0.8,
        "expires_at": "2026-01-01T00:00:00+00:00",
        "explanation": [{"criterion": "topic_fit", "reason": "python, data"}],
    }
)


async def ensure_delivered(pool: asyncpg.Pool, wanted: int) -> int:
    """At least `wanted` sent rows in the delivery log, of 50 history tenants, with the columns a
    real delivered row has (one attempt, sent a second after it was written, over the past
    week so RETENTION_DAYS keeps them for weeks). Returns how many there are now."""
    there = int(
        await pool.fetchval("SELECT count(*) FROM notifications.deliveries WHERE state = 'sent'")
    )
    missing = wanted - there
    if missing <= 0:
        return there
    batch = uuid.uuid4().hex[:8]  # new ids, whatever earlier runs wrote
    await pool.execute(
        """INSERT INTO notifications.deliveries
               (id, tenant_id, source_event_id, recipient_id, channel, kind, category, match_id,
                partner_id, context, correlation_id, state, attempts, next_attempt_at,
                give_up_at, created_at, sent_at, traceparent)
           SELECT md5($1 || g)::uuid, 'history-' || (g % 50), 'event-' || $1 || '-' || g,
                  'person-' || (g % 20000), CASE WHEN g % 2 = 0 THEN 'email' ELSE 'webhook' END,
                  'match-proposal', 'proposals', 'match-' || g, 'person-' || (g % 7919),
                  $3::jsonb, 'corr-' || g, 'sent', 1, t, t + interval '7 days', t,
                  t + interval '1 second',
                  '00-' || md5('t' || g) || '-' || left(md5('s' || g), 16) || '-01'
           FROM generate_series(1, $2) AS g,
                LATERAL (SELECT now() - make_interval(secs => g % 604800)) AS c(t)""",
        batch,
        missing,
        HISTORY_CONTEXT,
    )
    await pool.execute("ANALYZE notifications.deliveries")  # as autovacuum would after this
    return wanted


def start(
    command: list[str], env: dict[str, str] | None = None, quiet: bool = True
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, *command],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE if quiet else None,
    )


async def wait_healthy(port: int, process: subprocess.Popen[bytes]) -> None:
    """Until the replica answers /healthz; NotReady if it exits first or takes over 60 s."""
    url = f"http://127.0.0.1:{port}/healthz"
    await wait_until(lambda: answers(url), 60, alive=lambda: process.poll() is None)


async def run(args: Any) -> dict[str, Any]:
    async with real_infrastructure("bench") as infra:
        return await measure(args, infra)


async def measure(args: Any, infra: Endpoints) -> dict[str, Any]:
    run_id = uuid.uuid4().hex[:8]
    email_tenant, hook_tenant = f"bench-{run_id}-email", f"bench-{run_id}-hook"
    tenants = [email_tenant, hook_tenant]
    reports = Path(tempfile.mkdtemp(prefix="notify-bench-"))
    smtp_port, hook_port, *ports = free_ports(2 + args.replicas)
    sinks = [
        start(
            [
                "-m",
                "shared.local.sinks",
                kind,
                "--port",
                str(port),
                "--report",
                str(reports / f"{kind}.json"),
            ]
        )
        for kind, port in (("smtp", smtp_port), ("webhook", hook_port))
    ]
    for sink in sinks:
        assert sink.stdout is not None and sink.stdout.readline().strip() == b"ready"
    pool = await asyncpg.create_pool(infra.database_url, min_size=1, max_size=2)
    assert pool is not None
    history = time.monotonic()
    delivered_before = await ensure_delivered(pool, args.delivered)
    history = time.monotonic() - history
    await pool.execute(
        "INSERT INTO notifications.tenant_channels VALUES ($1, 'webhook', $2, $3)",
        hook_tenant,
        f"http://127.0.0.1:{hook_port}/hooks",
        SECRET,
    )
    profile = ["-m", "cProfile", "-o", args.profile] if args.profile else []
    # A new group pinned at the topics' ends: the replicas consume nothing that earlier runs on
    # the same stack left behind, and deliver only the rows seeded here.
    group = await fresh_group(infra.bootstrap_servers, "notifications", "bench-notify")
    services = [
        start(
            [*profile, "-m", "services.notifications"],
            service_env(args, smtp_port, port, tenants, infra, group),
            quiet=not args.verbose,
        )
        for port in ports
    ]
    try:
        for port, service in zip(ports, services, strict=True):
            await wait_healthy(port, service)
        postmaster = parent_pid(await pool.fetchval("SELECT pg_backend_pid()"))
        cpu = {p.pid: cpu_seconds(p.pid) for p in (*services, *sinks)}
        database_cpu = database_cpu_seconds(postmaster)
        started = time.monotonic()
        ids = await seed(pool, args.n, email_tenant, hook_tenant)
        seeded = time.monotonic() - started
        pending = True
        while pending and time.monotonic() - started < args.timeout:
            await asyncio.sleep(0.2)
            # one row of the pending-only index: counting what is sent each time read up to
            # 50,000 rows five times a second, CPU taken from the service being measured
            pending = await pool.fetchval(
                """SELECT EXISTS (SELECT 1 FROM notifications.deliveries
                                  WHERE tenant_id = ANY($1::text[]) AND state = 'pending')""",
                tenants,
            )
        elapsed = time.monotonic() - started
        sent = await pool.fetchval(
            """SELECT count(*) FROM notifications.deliveries
               WHERE tenant_id = ANY($1::text[]) AND state = 'sent'""",
            tenants,
        )
        cpu = {pid: cpu_seconds(pid) - before for pid, before in cpu.items()}
        database_cpu = database_cpu_seconds(postmaster) - database_cpu
        rss = max(peak_rss_mb(service.pid) for service in services)
        await asyncio.sleep(0.5)  # anything sent twice would have arrived by now
    finally:
        # uvicorn re-raises the signal after a graceful stop; SIGINT lets cProfile write its file
        for service in services:
            stop_process(service, signal.SIGINT if args.profile else signal.SIGTERM)
        for sink in sinks:
            stop_process(sink)
        for table in ("deliveries", "contacts", "tenant_channels"):
            await pool.execute(
                f"DELETE FROM notifications.{table} WHERE tenant_id = ANY($1::text[])", tenants
            )
        await pool.close()

    email = Counter(json.loads((reports / "smtp.json").read_text()))
    hooks = Counter(json.loads((reports / "webhook.json").read_text()))
    expected = {f"<{i}@mentornet>" for i in ids[0::2]} | set(ids[1::2])
    duplicates = sum(c - 1 for c in (email + hooks).values() if c > 1)
    rate = sent / elapsed
    missing = len(expected - set(email) - set(hooks))
    return {
        "benchmark": "notify",
        "input": "delivery rows inserted directly (no Kafka); service, SMTP and HTTP receivers "
        "are separate processes",
        "notifications": args.n,
        "sent": sent,
        "seconds": round(elapsed, 2),
        "seed_seconds": round(seeded, 2),
        "delivered_before": delivered_before,  # sent rows of other tenants when measuring
        "delivered_seed_seconds": round(history, 2),
        "deliveries_per_second": round(rate, 1),
        "email_received": sum(email.values()),
        "webhook_received": sum(hooks.values()),
        "missing": missing,
        "duplicates": duplicates,
        "replicas": args.replicas,
        **({"variant": f"replicas-{args.replicas}"} if args.replicas != 1 else {}),
        "service_peak_rss_mb": round(rss, 1),  # per replica (the largest)
        "service_cpu_ms_per_delivery": round(
            sum(cpu[s.pid] for s in services) * 1000 / max(sent, 1), 3
        ),
        "database_cpu_ms_per_delivery": None  # not a local process
        if math.isnan(database_cpu)
        else round(database_cpu * 1000 / max(sent, 1), 3),
        "receivers_cpu_ms_per_delivery": round(
            sum(cpu[s.pid] for s in sinks) * 1000 / max(sent, 1), 3
        ),
        "settings": {
            "concurrency": args.concurrency,
            "smtp_connections": args.smtp_connections,
            "webhook_connections": args.webhook_connections,
            "rate_per_endpoint": args.rate or "unlimited",
        },
        "target": ">= 1000 deliveries/s, 0 duplicates, 0 missing, with 500,000 delivered before",
        "target_met": sent == args.n
        and rate >= 1000
        and duplicates == 0
        and missing == 0
        and (args.quick or delivered_before >= FULL_HISTORY),
        "machine": machine(),
    }


def main() -> None:
    args = arguments(
        (__doc__ or "").splitlines()[0],
        [
            ("-n", {"type": int, "default": None, "help": "notifications (default 50,000)"}),
            ("--replicas", {"type": int, "default": 1, "help": "service processes"}),
            ("--concurrency", {"type": int, "default": 256}),
            ("--smtp-connections", {"type": int, "default": 32}),
            ("--webhook-connections", {"type": int, "default": 32}),
            ("--rate", {"type": float, "default": 0, "help": "per endpoint; 0 = unlimited"}),
            (
                "--delivered",
                {
                    "type": int,
                    "default": None,
                    "help": "sent rows of other tenants the log holds first (default 500,000)",
                },
            ),
            ("--timeout", {"type": float, "default": 600}),
            ("--verbose", {"action": "store_true"}),
            ("--profile", {"help": "write a cProfile of the service to this file"}),
        ],
    )
    args.n = args.n or (2_000 if args.quick else 50_000)
    if args.delivered is None:
        args.delivered = 20_000 if args.quick else FULL_HISTORY
    emit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
