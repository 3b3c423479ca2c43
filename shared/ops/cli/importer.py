"""`mentornet import FILE`: enrol people from a spreadsheet export (CSV) or JSON lines.

All or nothing by default: every row is checked (shared.ops.imports) before the first record is
sent, so a file with a bad row publishes nothing and lists what to fix. Records go out through an
idempotent producer (acks=all) and their ids derive from the content, so importing a file again
(after a failure halfway, or by mistake) changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from aiokafka import AIOKafkaProducer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from shared.ops.cli.common import BootstrapOption, SigningKeyFileOption, fail, run, signing_key
from shared.ops.cli.dlq import kafka_settings
from shared.ops.imports import Checked, Format, ImportRefused, Record, Role, check, detect_format
from shared.runtime.kafka import client_options
from shared.runtime.settings import KafkaSettings

console = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)  # one problem per line, never wrapped


async def publish(
    kafka: KafkaSettings, records: Sequence[Record], acknowledged: Callable[[], None]
) -> None:
    """Send every record and return once Kafka has acknowledged each one (acks=all).

    `acknowledged` is called per record Kafka confirmed. A failure says how far it got: the ids
    make a second run safe, so the answer to any failure is to import the file again."""
    producer = AIOKafkaProducer(
        **client_options(kafka),
        client_id="mentornet-import",
        acks="all",
        enable_idempotence=True,
        linger_ms=20,
        max_batch_size=256 * 1024,
    )
    confirmed = 0

    def done(future: asyncio.Future[Any]) -> None:
        nonlocal confirmed
        if not future.cancelled() and future.exception() is None:
            confirmed += 1
            acknowledged()

    try:
        await producer.start()
        futures = []
        for record in records:
            future = await producer.send(
                record.topic, record.value, key=record.key, headers=list(record.headers)
            )
            future.add_done_callback(done)
            futures.append(future)
        await producer.flush()
        await asyncio.gather(*futures)
    except Exception as exc:
        raise RuntimeError(
            f"{exc or type(exc).__name__} ({confirmed} of {len(records)} records acknowledged; "
            "importing the same file again is safe: what already arrived is a duplicate)"
        ) from exc
    finally:
        await producer.stop()


def import_command(
    file: Annotated[
        Path,
        typer.Argument(
            help="A .csv, .jsonl or .ndjson file (UTF-8).",
            exists=True,
            dir_okay=False,
            readable=True,
        ),
    ],
    tenant: Annotated[str, typer.Option(help="Your organisation's id (tenantid).")],
    program: Annotated[str, typer.Option(help="The program every row enrols into.")],
    role: Annotated[
        Role, typer.Option(help="mentor (mentor-registered) or mentee (mentee-registered).")
    ],
    file_format: Annotated[
        Format | None,
        typer.Option("--format", help="csv or jsonl (default: by the file's extension)."),
    ] = None,
    skip_invalid: Annotated[
        bool,
        typer.Option(
            "--skip-invalid",
            help="Publish the valid rows, list the invalid ones, and exit 0 even if some were "
            "skipped (default: any invalid row publishes nothing and exits 1).",
        ),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check every row; publish nothing.")
    ] = False,
    revision: Annotated[
        str,
        typer.Option(
            help="Mixed into every event id: a new value re-sends rows already imported "
            "unchanged (e.g. to undo a later change by restoring an earlier file).",
        ),
    ] = "",
    signing_key_file: SigningKeyFileOption = None,
    max_errors: Annotated[
        int, typer.Option(min=0, help="List at most this many problems (0: all).")
    ] = 100,
    bootstrap_servers: BootstrapOption = None,
) -> None:
    """Register people from a CSV or JSON-lines file: one mentor-registered or mentee-registered
    event per row.

    Every row is checked against the contract first; by default one invalid row means nothing
    is published (exit 1). Importing the same file again changes nothing."""
    checking = err.status(f"checking {file.name}") if err.is_terminal else contextlib.nullcontext()
    try:
        key = signing_key(signing_key_file)
        with checking:
            checked = check(
                file.read_bytes(),
                detect_format(file, file_format),
                role=role,
                tenant=tenant,
                program=program,
                now=datetime.now(UTC),
                revision=revision,
                signing_key=key,
            )
    except (ImportRefused, OSError, ValueError) as exc:
        fail(exc)
        raise typer.Exit(1) from None
    if checked.ignored_columns:
        _warn_ignored(checked.ignored_columns, role)
    if checked.problems:
        _list_problems(checked, max_errors)
        if not skip_invalid:
            valid = len(checked.records)
            err.print(
                f"[red]error:[/red] {checked.invalid_rows} of {checked.rows} rows are invalid; "
                f"nothing was published. Fix them, or pass --skip-invalid to publish the {valid} "
                "valid rows."
            )
            raise typer.Exit(1)
        err.print(
            f"[yellow]warning:[/yellow] skipping the {checked.invalid_rows} invalid row(s) of "
            f"{checked.rows} listed above (--skip-invalid)"
        )
    records = checked.records
    skipped = checked.invalid_rows
    what = (
        f"{len(records)} {role} registration{'s' * (len(records) != 1)} for tenant {tenant}, "
        f"program {program} ({skipped} row{'s' * (skipped != 1)} skipped)"
    )
    if dry_run:
        console.print(escape(f"dry run: every row checked, nothing sent; would publish {what}"))
        return
    if records:
        with Progress(
            TextColumn("publishing"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err,
            disable=not err.is_terminal,
        ) as progress:
            task = progress.add_task("publishing", total=len(records))
            run(publish(kafka_settings(bootstrap_servers), records, lambda: progress.advance(task)))
    console.print(escape(f"published {what}"))


def _warn_ignored(ignored: Sequence[str], role: Role) -> None:
    names = ", ".join(name or "(unnamed)" for name in ignored)
    note = "; program_id comes from --program" if "program_id" in ignored else ""
    err.print(
        f"[yellow]warning:[/yellow] ignoring column(s) {role} registrations do not have: "
        f"{escape(names)}{note}"
    )


def _list_problems(checked: Checked, limit: int) -> None:
    shown = checked.problems if limit == 0 else checked.problems[:limit]
    for problem in shown:
        err.print(str(problem), markup=False)
    more = len(checked.problems) - len(shown)
    if more:
        err.print(f"... and {more} more problem(s) (--max-errors 0 lists them all)")
