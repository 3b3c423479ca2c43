"""`mentornet dlq list|show|replay`: read, inspect and replay dead letters.

Reading never joins a consumer group nor commits an offset, so an operator can look as often as
they like without moving any service. A replay sends the original value, key and headers (the
`dlq-*` ones removed) back to the topic named by `dlq-topic`: once the publisher (or mentornet) is
fixed, the record gets a second chance; a record that is still wrong is dead-lettered again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import typer
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from services.registry import NAMES as SERVICES
from shared.contract.topics import TOPICS
from shared.ops.cli.common import BootstrapOption, run
from shared.runtime.kafka import client_options
from shared.runtime.settings import KafkaSettings

T = TypeVar("T")
DLQ_PREFIX = "dlq-"
READ_TIMEOUT = 120.0  # seconds to read a dead-letter topic to its end before giving up

app = typer.Typer(
    help="Dead letters: list, show and replay records a service rejected.", no_args_is_help=True
)
console = Console()


class CliError(Exception):
    """A user-facing failure: printed on one line by the CLI, exit status 1."""


# --- reading topics without a consumer group ---------------------------------------------------


def kafka_settings(bootstrap_servers: str | None) -> KafkaSettings:
    """The environment's Kafka settings (security included), with an optional broker override."""
    kafka = KafkaSettings()
    if bootstrap_servers:
        kafka = kafka.model_copy(update={"bootstrap_servers": bootstrap_servers})
    return kafka


async def topic_partitions(kafka: KafkaSettings, topics: Sequence[str]) -> dict[str, list[int]]:
    """Partition ids of each topic; an unknown topic is a CliError naming it."""
    admin = AIOKafkaAdminClient(**client_options(kafka), client_id="mentornet-cli")
    await admin.start()
    try:
        described = await admin.describe_topics(list(topics))
    finally:
        await admin.close()
    layout = {d["topic"]: sorted(p["partition"] for p in d["partitions"]) for d in described}
    for topic in topics:
        if not layout.get(topic):
            raise CliError(f"unknown topic {topic!r} (`mentornet topics describe` lists them)")
    return layout


@asynccontextmanager
async def _consumer(kafka: KafkaSettings) -> AsyncIterator[AIOKafkaConsumer]:
    consumer = AIOKafkaConsumer(
        **client_options(kafka),
        client_id="mentornet-cli",
        group_id=None,  # no group: nothing is committed, no service is disturbed
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        yield consumer
    finally:
        await consumer.stop()


async def read_topics(
    kafka: KafkaSettings,
    topics: Sequence[str],
    *,
    timeout: float = READ_TIMEOUT,
    from_beginning: bool = True,
) -> AsyncIterator[Any]:
    """Yield the records of `topics` as a consistent snapshot.

    From the beginning: every record up to the end offsets taken at the start (records published
    meanwhile are left out, so the snapshot ends), failing after `timeout` seconds. Otherwise:
    the records published during the next `timeout` seconds (a live window).
    """
    layout = await topic_partitions(kafka, topics)
    partitions = [TopicPartition(t, p) for t, ps in layout.items() for p in ps]
    async with _consumer(kafka) as consumer:
        consumer.assign(partitions)
        deadline = time.monotonic() + timeout
        if not from_beginning:
            await consumer.seek_to_end(*partitions)
            for tp in partitions:
                await consumer.position(tp)
            while (left := deadline - time.monotonic()) > 0:
                batches = await consumer.getmany(timeout_ms=int(min(left, 0.5) * 1000))
                for records in batches.values():
                    for record in records:
                        yield record
            return
        start = await consumer.beginning_offsets(partitions)
        end = await consumer.end_offsets(partitions)
        todo = {tp: end[tp] for tp in partitions if end[tp] > start[tp]}
        consumer.pause(*(tp for tp in partitions if tp not in todo))
        await consumer.seek_to_beginning(*todo)
        while todo:
            if time.monotonic() > deadline:
                raise CliError(
                    f"could not read {', '.join(topics)} to the end in {timeout:g} s "
                    "(raise --timeout)"
                )
            batches = await consumer.getmany(*todo, timeout_ms=500)
            for tp, records in batches.items():
                for record in records:
                    if record.offset < todo.get(tp, -1):
                        yield record
            for tp in list(todo):
                if await consumer.position(tp) >= todo[tp]:
                    del todo[tp]
                    consumer.pause(tp)


# --- dead letters ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeadLetter:
    """One record of a dead-letter topic and what its `dlq-*` headers say about the original."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]

    @classmethod
    def of(cls, record: Any) -> DeadLetter:
        return cls(
            record.topic,
            record.partition,
            record.offset,
            record.timestamp,
            record.key,
            record.value,
            tuple(record.headers or ()),
        )

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return (value or b"").decode("utf-8", "replace")
        return None

    @property
    def reason_code(self) -> str:
        return self.header("dlq-reason-code") or ""

    @property
    def reason(self) -> str:
        return self.header("dlq-reason") or ""

    @property
    def original_topic(self) -> str | None:
        return self.header("dlq-topic")

    @property
    def original_partition(self) -> str:
        return self.header("dlq-partition") or ""

    @property
    def original_offset(self) -> str:
        return self.header("dlq-offset") or ""

    @property
    def origin(self) -> str:
        """topic:partition:offset of the original record (just the topic when that is all)."""
        topic = self.original_topic or "?"
        if not self.original_partition:
            return topic
        return f"{topic}:{self.original_partition}:{self.original_offset}"

    @property
    def rejected_at(self) -> str:
        """When the service rejected it (dlq-time), else when the dead letter was written."""
        stamp = self.header("dlq-time")
        if stamp:
            try:
                return datetime.fromisoformat(stamp).strftime("%Y-%m-%d %H:%M:%S")
            except ValueError:
                return stamp
        return datetime.fromtimestamp(self.timestamp_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")

    @property
    def original_headers(self) -> list[tuple[str, bytes]]:
        """The headers the publisher sent: everything but what the dead-letter writer added."""
        return [(k, v) for k, v in self.headers if not k.startswith(DLQ_PREFIX)]

    def original_value(self) -> bytes | None:
        """The value to replay; a tombstone was stored as b"" and goes back as a tombstone."""
        if self.reason_code == "empty" and not self.value:
            return None
        return self.value


def printable(raw: bytes | None) -> str:
    """Bytes as UTF-8 text when valid, else with the invalid bytes escaped (\\xNN)."""
    if raw is None:
        return "(none)"
    return raw.decode("utf-8", "backslashreplace")


def hexdump(raw: bytes, width: int = 16) -> str:
    lines = []
    for start in range(0, len(raw), width):
        chunk = raw[start : start + width]
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{start:08x}  {chunk.hex(' '):<{width * 3}} {text}")
    return "\n".join(lines)


def dlq_topics(service: str, topic: str | None) -> list[str]:
    if topic:
        return [topic]
    if service == "all":
        return [f"dlq.{s}" for s in SERVICES]
    if service not in SERVICES:
        raise CliError(f"unknown service {service!r}: profiles, matching, notifications or all")
    return [f"dlq.{service}"]


async def read_dead_letters(kafka: KafkaSettings, topics: Sequence[str]) -> list[DeadLetter]:
    return [DeadLetter.of(r) async for r in read_topics(kafka, topics)]


async def fetch_dead_letter(
    kafka: KafkaSettings, topic: str, offset: int, partition: int | None
) -> DeadLetter:
    """Exactly the record at `offset`, or a CliError saying which offsets exist."""
    layout = await topic_partitions(kafka, [topic])
    partition = _partition(topic, layout[topic], partition)
    tp = TopicPartition(topic, partition)
    async with _consumer(kafka) as consumer:
        consumer.assign([tp])
        first = (await consumer.beginning_offsets([tp]))[tp]
        end = (await consumer.end_offsets([tp]))[tp]
        if not first <= offset < end:
            held = f"offsets {first} to {end - 1}" if end > first else "no records"
            raise CliError(f"offset {offset} not found in {topic} partition {partition} ({held})")
        consumer.seek(tp, offset)
        record = await asyncio.wait_for(consumer.getone(tp), READ_TIMEOUT)
    if record.offset != offset:
        raise CliError(f"offset {offset} not found in {topic} partition {partition}")
    return DeadLetter.of(record)


def _partition(topic: str, partitions: list[int], wanted: int | None) -> int:
    if wanted is None:
        if len(partitions) > 1:
            raise CliError(f"{topic} has {len(partitions)} partitions: give --partition")
        return partitions[0]
    if wanted not in partitions:
        raise CliError(f"{topic} has no partition {wanted}")
    return wanted


async def replay(
    kafka: KafkaSettings, letters: Sequence[DeadLetter], dry_run: bool
) -> list[tuple[DeadLetter, str]]:
    """Republish each dead letter's original record; returns (letter, where it went)."""
    targets = sorted({_target(letter) for letter in letters})
    if targets:
        await topic_partitions(kafka, targets)  # every original topic must still exist
    if dry_run:
        return [(letter, f"{_target(letter)} (dry run)") for letter in letters]
    producer = AIOKafkaProducer(
        **client_options(kafka),
        client_id="mentornet-cli-replay",
        acks="all",
        enable_idempotence=True,
    )
    await producer.start()
    done: list[tuple[DeadLetter, str]] = []
    try:
        for letter in letters:  # one by one, in dead-letter order, as they were first published
            meta = await producer.send_and_wait(
                _target(letter),
                letter.original_value(),
                key=letter.key,
                headers=letter.original_headers,
            )
            done.append((letter, f"{meta.topic} partition {meta.partition} offset {meta.offset}"))
    finally:
        await producer.stop()
    return done


def replayable(letter: DeadLetter) -> bool:
    """Whether a replay can change anything: some mentornet service reads the original topic.

    Not so for notifications' `delivery_failed` letters (their topic, notification-failed, is for
    analytics only): republishing would duplicate the event and retry no delivery. Topics outside
    the registry are the operator's call.
    """
    spec = TOPICS.get(_target(letter))
    return spec is None or bool(spec.consumers)


def _target(letter: DeadLetter) -> str:
    if not letter.original_topic:
        raise CliError(
            f"offset {letter.offset} of {letter.topic} is not a dead letter (no dlq-topic header)"
        )
    return letter.original_topic


def check_selector(offsets: Sequence[int], code: str | None, everything: bool) -> None:
    if sum([bool(offsets), code is not None, everything]) != 1:
        raise CliError("give exactly one of --offset (repeatable), --code or --all")


def select(
    letters: Sequence[DeadLetter], code: str | None, partition: int | None
) -> list[DeadLetter]:
    """The dead letters a replay by --code (or --all, code None) names, optionally one partition."""
    return [
        x
        for x in letters
        if (partition is None or x.partition == partition)
        and (code is None or x.reason_code == code)
    ]


# --- commands ----------------------------------------------------------------------------------


@app.command("list")
def list_command(
    service: Annotated[
        str, typer.Option(help="Whose dead letters: profiles, matching, notifications or all.")
    ] = "all",
    topic: Annotated[
        str | None, typer.Option(help="Read this topic instead (overrides --service).")
    ] = None,
    code: Annotated[str | None, typer.Option(help="Only this reason code.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Show at most the N newest.")] = 50,
    bootstrap_servers: BootstrapOption = None,
) -> None:
    """Dead letters, oldest first: where they came from and why they were rejected."""

    async def go() -> tuple[list[DeadLetter], int]:
        letters = await read_dead_letters(
            kafka_settings(bootstrap_servers), dlq_topics(service, topic)
        )
        if code is not None:
            letters = [x for x in letters if x.reason_code == code]
        letters.sort(key=lambda x: (x.timestamp_ms, x.topic, x.partition, x.offset))
        return letters[-limit:], len(letters)

    shown, total = run(go())
    if not shown:
        console.print("no dead letters")
        return
    table = Table(box=box.SIMPLE_HEAD)
    table.add_column("dlq topic", overflow="fold")
    table.add_column("offset", no_wrap=True, justify="right")
    table.add_column("original", overflow="fold")
    table.add_column("code", overflow="fold")
    table.add_column("reason", overflow="fold", min_width=20)
    table.add_column("rejected at (UTC)", overflow="fold")
    table.add_column("key", overflow="fold", min_width=8)
    for x in shown:
        table.add_row(
            x.topic if x.partition == 0 else f"{x.topic}/{x.partition}",
            str(x.offset),
            x.origin,
            x.reason_code,
            escape(x.reason),
            x.rejected_at,
            escape(printable(x.key)),
        )
    # A pipe gets whole lines (grep-able), a terminal its own width.
    (console if console.is_terminal else Console(width=240)).print(table)
    console.print(
        f"{len(shown)} of {total} dead letter(s); "
        "`mentornet dlq show TOPIC OFFSET` shows one in full"
    )


@app.command("show")
def show_command(
    dlq_topic: Annotated[str, typer.Argument(help="e.g. dlq.profiles")],
    offset: Annotated[int, typer.Argument(min=0)],
    partition: Annotated[
        int | None, typer.Option(help="Partition (dead-letter topics have one).")
    ] = None,
    max_bytes: Annotated[
        int, typer.Option(min=0, help="Print at most this much of the value (0: all).")
    ] = 4096,
    hex_dump: Annotated[bool, typer.Option("--hex", help="Print the value as a hex dump.")] = False,
    bootstrap_servers: BootstrapOption = None,
) -> None:
    """One dead letter in full: reason, original coordinates, headers, key and bytes."""
    x: DeadLetter = run(
        fetch_dead_letter(kafka_settings(bootstrap_servers), dlq_topic, offset, partition)
    )
    facts = Table(show_header=False, box=None)
    facts.add_row("dead letter", f"{x.topic} partition {x.partition} offset {x.offset}")
    facts.add_row("reason code", x.reason_code or "?")
    facts.add_row("reason", escape(x.reason))
    facts.add_row(
        "original",
        f"{x.original_topic or '?'} partition {x.original_partition} offset {x.original_offset}"
        if x.original_partition
        else x.original_topic or "?",
    )
    facts.add_row("service", x.header("dlq-service") or "?")
    facts.add_row("rejected at", escape(x.header("dlq-time") or x.rejected_at))
    facts.add_row("key", escape(printable(x.key)))
    console.print(facts)
    console.print("[bold]original headers[/bold]")
    for name, value in x.original_headers or [("(none)", b"")]:
        console.print(Text(f"  {name}: {printable(value)}"), soft_wrap=True)
    raw = x.value or b""
    try:
        raw.decode("utf-8")
        kind = "UTF-8 text"
    except UnicodeDecodeError:
        kind = "not valid UTF-8; invalid bytes shown as \\xNN"
    shown = raw if max_bytes == 0 else raw[:max_bytes]
    console.print(f"[bold]original value[/bold] ({len(raw)} bytes, {escape(kind)})")
    body = hexdump(shown) if hex_dump else printable(shown)
    console.print(Text(body), soft_wrap=True)
    if len(shown) < len(raw):
        console.print(f"... {len(raw) - len(shown)} more bytes (--max-bytes 0 shows all)")


@app.command("replay")
def replay_command(
    dlq_topic: Annotated[str, typer.Argument(help="e.g. dlq.profiles")],
    offset: Annotated[
        list[int] | None, typer.Option("--offset", help="A dead letter's offset (repeatable).")
    ] = None,
    code: Annotated[
        str | None, typer.Option(help="Every dead letter with this reason code.")
    ] = None,
    everything: Annotated[bool, typer.Option("--all", help="Every dead letter.")] = False,
    partition: Annotated[int | None, typer.Option(help="Only this partition.")] = None,
    dry_run: Annotated[
        bool, typer.Option(help="Say what would be replayed; send nothing.")
    ] = False,
    bootstrap_servers: BootstrapOption = None,
) -> None:
    """Republish original records (value, key, headers) to their original topic.

    For after the publisher or mentornet was fixed: a record still wrong is dead-lettered again.
    """
    offsets = list(offset or [])

    async def go() -> tuple[list[tuple[DeadLetter, str]], list[DeadLetter]]:
        check_selector(offsets, code, everything)
        kafka = kafka_settings(bootstrap_servers)
        if offsets:  # each must exist: fetched one by one, in offset order
            chosen = [
                await fetch_dead_letter(kafka, dlq_topic, o, partition)
                for o in sorted(set(offsets))
            ]
        else:
            chosen = select(await read_dead_letters(kafka, [dlq_topic]), code, partition)
        useless = [x for x in chosen if not replayable(x)]
        if useless and offsets:
            x = useless[0]
            raise CliError(
                f"offset {x.offset} came from {x.original_topic}, which no mentornet service "
                "reads: a replay would retry nothing"
            )
        return await replay(kafka, [x for x in chosen if replayable(x)], dry_run), useless

    done, skipped = run(go())
    if skipped:
        console.print(
            f"skipped {len(skipped)} dead letter(s) whose original topic no mentornet service "
            f"reads ({', '.join(sorted({x.reason_code for x in skipped}))})"
        )
    if not done:
        console.print("nothing to replay")
        return
    table = Table("dlq offset", "code", "key", "would go to" if dry_run else "replayed to")
    for letter, where in done:
        table.add_row(
            str(letter.offset), letter.reason_code, escape(printable(letter.key)), escape(where)
        )
    console.print(table)
    verb = "would replay" if dry_run else "replayed"
    console.print(f"{verb} {len(done)} record(s) from {dlq_topic}")
