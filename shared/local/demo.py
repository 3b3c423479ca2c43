"""`mentornet simulate` (and `make demo`): publish HR traffic like an HR system would, show the
proposals, and (with `life`) play the mentoring apps' side: people accept or decline, meet, one
pair parts early, check-ins and closings are answered, until every relationship has ended."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Sequence
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from rich.console import Console
from rich.panel import Panel
from rich.progress import Progress

from services.notifications.domain import notification_id
from shared.local.life import DEMO_TIMINGS, LIFE_TOPICS, Life
from shared.local.simulation import Population, Record

console = Console()
ANSWER_LINK = re.compile(r"https?://\S+/answer\?\S*choice=accept\S*")
LIFE_SECONDS = 150.0  # at most, after the proposals: a demo program lives 30 s per relationship


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
    life: bool = False,
    mail_dir: Path | None = None,
) -> str | None:
    """Returns, with `life`, where to answer the proposal left to the person running the demo
    (the link in its email, read from `mail_dir` when the stack's mail catcher has it)."""
    population = Population(tenant, programs=programs, seed=seed)
    records = list(population.registrations(mentors, mentees))
    if life:  # short relationships, said before anyone enrols
        configs = [population.configuration(p, **DEMO_TIMINGS) for p in population.programs]
        records = configs + records
    goals = {
        r.data["person_id"]: [g["topic"] for g in r.data["goals"]]
        for r in records
        if r.topic == "mentee-registered"
    }
    emails = {r.data["person_id"]: r.data["email"] for r in records if "email" in r.data}
    reader = await _reader(bootstrap) if show_proposals or life else None
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    people = Life(population, goals, seed=seed) if life else None
    try:
        await _publish(producer, records, tenant, rate)
        if reader is not None:
            await _follow(reader, producer, tenant, mentees, wait, people)
    finally:
        await producer.stop()
        if reader is not None:
            await reader.stop()
    if people is None or people.for_you is None:
        return None
    left = people.for_you
    address = emails[left.mentor_id]
    email_id = notification_id(tenant, left.event_id, left.mentor_id, "email", "match-proposal")
    link = await _answer_link(mail_dir, f"<{email_id}@mentornet>") if mail_dir else None
    if link is None:
        return f"Answer a proposal yourself: open the link in the proposal email sent to {address}."
    return f"Answer a proposal yourself, as its mentor ({address}): open {link}"


async def _answer_link(mail_dir: Path, message_id: str, timeout: float = 30.0) -> str | None:
    """The accept link of the email `message_id`, once the mail catcher saved it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        link = await asyncio.to_thread(_find_answer_link, mail_dir, message_id)
        if link:
            return link
        await asyncio.sleep(0.5)
    return None


def _find_answer_link(mail_dir: Path, message_id: str) -> str | None:
    for path in sorted(mail_dir.glob("*.eml"), reverse=True):  # newest first
        message = message_from_bytes(path.read_bytes(), policy=policy.default)
        if message["Message-ID"] != message_id:
            continue
        body = message.get_body(("plain",))
        found = ANSWER_LINK.search(body.get_content() if body else "")
        if found:
            return found.group(0)
    return None


async def _publish(
    producer: AIOKafkaProducer, records: Sequence[Record], tenant: str, rate: float
) -> None:
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


async def _reader(bootstrap: str) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(
        *LIFE_TOPICS, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="latest"
    )
    await consumer.start()
    await consumer.seek_to_end()
    for tp in consumer.assignment():
        await consumer.position(tp)
    return consumer


async def _follow(
    consumer: AIOKafkaConsumer,
    producer: AIOKafkaProducer,
    tenant: str,
    expected: int,
    wait: float,
    life: Life | None,
) -> None:
    """Print proposals as they come (and, with `life`, what happens to them) until `expected`
    proposals were seen, or every relationship of the life has ended; `wait` seconds at most for
    the proposals, LIFE_SECONDS more for the life."""
    seen = 0
    deadline = time.monotonic() + wait + (LIFE_SECONDS if life else 0)
    while time.monotonic() < deadline:
        if life.settled() if life is not None else seen >= expected:
            break
        batches = await consumer.getmany(timeout_ms=500)
        for record in (r for rs in batches.values() for r in rs):
            event = json.loads(record.value)
            if event.get("tenantid") != tenant:
                continue
            if event["type"] == "match-proposed":
                seen += 1
                _show_proposal(seen, event["data"])
            elif life is not None:
                _show_step(event)
            if life is not None:
                for answer in life.react(event):
                    await producer.send(answer.topic, answer.value, key=answer.key)
        await producer.flush()
    console.print(
        f"{seen} proposal(s) received for {tenant}"
        + ("" if seen >= expected else " (others wait for a free mentor or are still coming)")
    )
    if life is not None:
        state = "every relationship has ended" if life.settled() else "stopped waiting"
        console.print(
            f"life: {len(life.confirmed)} relationship(s), {len(life.ended)} proposal(s) or "
            f"relationship(s) ended; {state}"
        )


def _show_proposal(number: int, data: dict[str, Any]) -> None:
    lines = [
        f"[bold]{data['mentee_id']}[/bold] → mentor [bold]{data['mentor_id']}[/bold]   "
        f"score {data['score']:.2f}   answer before {data['expires_at'][:16]}"
    ]
    for item in data["explanation"]:
        lines.append(
            f"  {item['contribution']:.3f} / {item['weight']:.2f}  {item['criterion']:<10} {item['reason']}"
        )
    console.print(
        Panel("\n".join(lines), title=f"proposal {number} ({data['program_id']})", expand=False)
    )


def _show_step(event: dict[str, Any]) -> None:
    """One line per step of a relationship's life."""
    data = event["data"]
    pair = f"{data['mentee_id']} & {data['mentor_id']}"
    if event["type"] == "match-confirmed":
        console.print(f"[green]confirmed[/green]  {pair}")
    elif event["type"] == "match-ended":
        why = f" ({data['reason']}, by the {data['ended_by_role']})" if data.get("reason") else ""
        console.print(f"[yellow]{data['outcome']}[/yellow]  {pair}{why}")
    elif event["type"] == "feedback-requested" and data["role"] == "mentee":
        what = f"check-in {data['checkin']}" if data["kind"] == "checkin" else "closing feedback"
        console.print(f"[cyan]asked[/cyan]  {pair}: {what}")
