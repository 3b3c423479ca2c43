"""`mentornet simulate` (and `make demo`): publish HR traffic like an HR system would, then show
the proposals."""

from __future__ import annotations

import asyncio
import json
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from rich.console import Console
from rich.panel import Panel
from rich.progress import Progress

from shared.local.simulation import Population

console = Console()


async def simulate(
    bootstrap: str,
    tenant: str,
    mentors: int,
    mentees: int,
    programs: int,
    rate: float,
    seed: int,
    show_proposals: bool,
    wait: float,
) -> None:
    population = Population(tenant, programs=programs, seed=seed)
    records = list(population.registrations(mentors, mentees))
    proposals_reader = await _reader(bootstrap) if show_proposals else None
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        started = time.monotonic()
        with Progress(console=console) as progress:
            task = progress.add_task(f"publishing HR events for {tenant}", total=len(records))
            for i, record in enumerate(records):
                await producer.send(record.topic, record.value, key=record.key)
                progress.advance(task)
                ahead = (i + 1) / rate - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
            await producer.flush()
        console.print(f"published {len(records)} events in {time.monotonic() - started:.1f} s")
    finally:
        await producer.stop()
    if proposals_reader is not None:
        try:
            await _show_proposals(proposals_reader, tenant, mentees, wait)
        finally:
            await proposals_reader.stop()


async def _reader(bootstrap: str) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(
        "match-proposed", bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="latest"
    )
    await consumer.start()
    await consumer.seek_to_end()
    for tp in consumer.assignment():
        await consumer.position(tp)
    return consumer


async def _show_proposals(
    consumer: AIOKafkaConsumer, tenant: str, expected: int, wait: float
) -> None:
    seen = 0
    deadline = time.monotonic() + wait
    while seen < expected and time.monotonic() < deadline:
        batches = await consumer.getmany(timeout_ms=500)
        for record in (r for rs in batches.values() for r in rs):
            event = json.loads(record.value)
            if event.get("tenantid") != tenant:
                continue
            seen += 1
            data = event["data"]
            lines = [
                f"[bold]{data['mentee_id']}[/bold] → mentor [bold]{data['mentor_id']}[/bold]   "
                f"score {data['score']:.2f}   answer before {data['expires_at'][:16]}"
            ]
            for item in data["explanation"]:
                lines.append(
                    f"  {item['contribution']:.3f} / {item['weight']:.2f}  {item['criterion']:<10} {item['reason']}"
                )
            console.print(
                Panel(
                    "\n".join(lines), title=f"proposal {seen} ({data['program_id']})", expand=False
                )
            )
    console.print(
        f"{seen} proposal(s) received for {tenant}"
        + ("" if seen >= expected else " (others wait for a free mentor or are still coming)")
    )
