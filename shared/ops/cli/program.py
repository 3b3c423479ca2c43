"""`mentornet program configure|show`: a program manager's side of matching, without writing
CloudEvents by hand.

`configure` checks a YAML or JSON file against the contract, shows what it changes against the
configuration in force (matching's table), publishes `program-configured` and waits until matching
applies it. `show` says where a program stands. The logic lives in `shared.ops.programs`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from shared.ops.cli.common import (
    BootstrapOption,
    DatabaseOption,
    SigningKeyFileOption,
    run,
    signing_key,
)
from shared.ops.cli.report import duration
from shared.ops.programs import (
    TOP_MENTORS,
    WAIT_SECONDS,
    Change,
    DeadLetters,
    InForce,
    Overview,
    Prepared,
    ProgramError,
    changes_against,
    connect,
    load_file,
    prepare,
    publish,
    read_in_force,
    read_overview,
    settings_of,
    show_value,
    validate,
    wait_in_force,
    waiting_words,
    weights_words,
)
from shared.runtime.settings import KafkaSettings, ServiceSettings

app = typer.Typer(
    help="Programs: configure how matching proposes, and see where a program stands.",
    no_args_is_help=True,
)
console = Console()

TenantOption = Annotated[str, typer.Option("--tenant", "-t", help="The organisation (tenantid).")]


def _out() -> Console:
    """A terminal gets its own width; a pipe whole lines (tables stay grep-able)."""
    return console if console.is_terminal else Console(width=200)


def _database(value: str | None) -> str:
    return value or ServiceSettings().database_url.get_secret_value()


def _kafka(bootstrap_servers: str | None) -> KafkaSettings:
    """The environment's Kafka settings (security included), with an optional broker override."""
    return (
        KafkaSettings(bootstrap_servers=bootstrap_servers) if bootstrap_servers else KafkaSettings()
    )


def _when(at: datetime | None, now: datetime) -> str:
    """`2026-05-04 10:00:00 UTC (3.2 min ago)`, or `(in 47.9 h)` for a time to come."""
    if at is None:
        return "-"
    seconds = (now - at).total_seconds()
    relative = f"{duration(seconds)} ago" if seconds >= 0 else f"in {duration(-seconds)}"
    return f"{at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC ({relative})"


def _state(program_id: str, tenant: str, in_force: InForce) -> str:
    if in_force.updated_at is None:
        return f"program {program_id} of tenant {tenant}: not configured yet; defaults in force"
    stamp = f"{in_force.updated_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
    return f"program {program_id} of tenant {tenant}: configuration in force since {stamp}"


def _changes_table(changes: list[Change], defaults: bool) -> Table:
    table = Table(box=box.SIMPLE_HEAD)
    table.add_column("setting", no_wrap=True)
    table.add_column("in force (defaults)" if defaults else "in force", overflow="fold")
    table.add_column("new", overflow="fold")
    for change in changes:
        table.add_row(
            change.setting, escape(show_value(change.in_force)), escape(show_value(change.new))
        )
    return table


@app.command("configure")
def configure_command(
    file: Annotated[
        Path,
        typer.Argument(help="The program-configured data: YAML (.yaml, .yml) or JSON (.json)."),
    ],
    tenant: TenantOption,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Check the file and show what would change; publish nothing."
        ),
    ] = False,
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="Wait until matching has it in force.")
    ] = True,
    timeout: Annotated[
        float, typer.Option(min=0, help="Seconds to wait for matching.")
    ] = WAIT_SECONDS,
    signing_key_file: SigningKeyFileOption = None,
    bootstrap_servers: BootstrapOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Check a program's configuration, show what changes, publish it and wait until in force.

    A file with the settings in force already publishes nothing ("no change")."""
    out = _out()

    async def go() -> None:
        document = load_file(file)
        prepared = prepare(validate(document), tenant, signing_key=signing_key(signing_key_file))
        program_id = prepared.configured.program_id
        async with connect(_database(database_url)) as conn:
            in_force = await read_in_force(conn, tenant, program_id)
            changes = changes_against(in_force, prepared.configured)
            out.print(_state(program_id, tenant, in_force), soft_wrap=True)
            if changes:
                out.print(_changes_table(changes, not in_force.configured))
                out.print(f"{len(changes)} setting(s) change")
            elif in_force.configured:
                out.print("no change")
            else:
                out.print("no change: publishing makes the defaults this program's configuration")
            if dry_run:
                out.print("dry run: nothing published")
                return
            if not changes and in_force.configured:
                out.print("nothing to publish: this configuration is in force already")
                return
            kafka = _kafka(bootstrap_servers)
            if not wait:
                _published(out, prepared, *await publish(kafka, prepared))
                out.print(f"not waiting: `mentornet program show {program_id} --tenant {tenant}`")
                return
            async with DeadLetters(kafka) as dead_letters:  # opened first: none is missed
                _published(out, prepared, *await publish(kafka, prepared))
                waited = await wait_in_force(conn, prepared, timeout, dead_letters)
            out.print(f"in force (matching applied it in {waited:.1f} s)")

    run(go())


def _published(out: Console, prepared: Prepared, partition: int, offset: int) -> None:
    event = prepared.event
    out.print(f"published {event.type} {event.id} (partition {partition}, offset {offset})")


@app.command("show")
def show_command(
    program_id: Annotated[str, typer.Argument(help="The program, e.g. leaders-2026.")],
    tenant: TenantOption,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON, for scripts.")] = False,
    top: Annotated[
        int, typer.Option(min=0, help="List this many mentors, most free places first.")
    ] = TOP_MENTORS,
    database_url: DatabaseOption = None,
) -> None:
    """Where a program stands: configuration and weights in force (configured, or learned from
    its outcomes), mentors and places, waiting mentees and why they wait, open proposals and
    relationships (from matching's tables)."""

    async def go() -> Overview:
        async with connect(_database(database_url)) as conn:
            overview = await read_overview(conn, tenant, program_id, top)
        if not overview.known:
            raise ProgramError(
                f"unknown program {program_id!r} in tenant {tenant!r}: matching has no "
                "configuration, enrolment or match for it"
            )
        return overview

    overview = run(go())
    if as_json:
        typer.echo(json.dumps(overview.as_json(), indent=2))
        return
    _print_overview(_out(), overview, datetime.now(UTC))


def _print_overview(out: Console, o: Overview, now: datetime) -> None:
    config = o.config
    out.print(_state(o.program_id, o.tenant, o.in_force), soft_wrap=True)
    shares, in_force = config.normalised_weights(), config.weights_in_force()
    # bounds matter only to learning: shown when it is on, or when the program set some
    bounds = config.learning == "on" or bool(config.weight_bounds)
    settings = Table(box=box.SIMPLE_HEAD)
    settings.add_column("setting", no_wrap=True)
    settings.add_column("value", overflow="fold")
    for name, value in settings_of(config, o.in_force.topics).items():
        if name.startswith("weight_bounds.") and not bounds:
            continue
        shown = show_value(value)
        if name.startswith("weights."):
            criterion = name.removeprefix("weights.")
            learned = f"learned {in_force[criterion]:.3g}: " if config.learns else ""
            shown += f" ({learned}{shares[criterion]:.0%} of the score)"
        settings.add_row(name, escape(shown))
    out.print(settings)
    learned_at = f"; learned {_when(o.learned_at, now)}" if config.learns else ""
    out.print(weights_words(config) + learned_at, soft_wrap=True)

    m = o.mentors
    held = m["free"] - m["free_not_paused"]
    out.print(
        f"mentors: {m['enrolled']} ({m['paused']} paused), {m['places']} places: "
        f"{m['taken']} taken, {m['free']} free"
        + (f" ({held} of them held by paused mentors)" if held else "")
    )
    if o.top_mentors:
        mentors = Table(box=box.SIMPLE_HEAD)
        for column in ("mentor", "capacity", "taken", "free", "paused"):
            mentors.add_column(column, justify="left" if column == "mentor" else "right")
        for r in o.top_mentors:
            mentors.add_row(
                escape(r["person_id"]),
                str(r["capacity"]),
                str(r["taken"]),
                str(r["free"]),
                "yes" if r["paused"] else "",
            )
        out.print(mentors)
    e = o.mentees
    out.print(
        f"mentees: {e['enrolled']} ({e['waiting']} waiting, {e['proposed']} proposed, "
        f"{e['matched']} matched, {e['done']} done)"
    )
    if e["waiting"]:
        out.print(f"  {waiting_words(o.waiting_reasons)}")
        out.print(f"  waiting the longest since {_when(e['oldest_waiting_since'], now)}")
    p = o.matches
    out.print(f"open proposals: {p['open_proposals']}")
    if p["open_proposals"]:
        out.print(f"  oldest proposed {_when(p['oldest_proposed_at'], now)}")
        out.print(f"  next to expire {_when(p['next_expiry'], now)}")
    out.print(
        f"relationships: {p['active_relationships']} active, {p['ended_relationships']} ended"
    )
