"""`mentornet`: stack, migrate, topics, schemas, simulate, import, program (and dlq, report).

Errors are printed in one line and exit non-zero; no traceback for a user's mistake.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from shared.ops.cli.common import BootstrapOption, DatabaseOption, fail, run
from shared.ops.cli.dlq import app as dlq_app
from shared.ops.cli.importer import import_command
from shared.ops.cli.program import app as program_app
from shared.ops.cli.report import report_command
from shared.runtime.settings import KafkaSettings, ServiceSettings

T = TypeVar("T")
app = typer.Typer(
    help="mentornet: mentoring at scale over Kafka.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
stack_app = typer.Typer(
    help="The local stack (Kafka, PostgreSQL, mail catcher, services) without Docker.",
    no_args_is_help=True,
)
topics_app = typer.Typer(help="Kafka topics of the contract.", no_args_is_help=True)
schemas_app = typer.Typer(
    help="JSON Schemas and AsyncAPI documents of the contract.", no_args_is_help=True
)
app.add_typer(stack_app, name="stack")
app.add_typer(topics_app, name="topics")
app.add_typer(schemas_app, name="schemas")
app.add_typer(dlq_app, name="dlq")
app.add_typer(program_app, name="program")
console = Console()
err = Console(stderr=True)


def bootstrap(value: str | None) -> str:
    return value or KafkaSettings().bootstrap_servers


def database(value: str | None) -> str:
    return value or ServiceSettings().database_url.get_secret_value()


# --- stack ---------------------------------------------------------------------------------


@stack_app.command("up")
def stack_up(
    services: Annotated[bool, typer.Option(help="Also start the three services.")] = True,
) -> None:
    """Start Kafka, PostgreSQL, the mail catcher and the services (ports: MENTORNET_*_PORT)."""
    from shared.local.stack import StackConfig, status, up

    cfg = StackConfig()
    run(up(cfg, services=services))
    _print_status(status(cfg))
    console.print("Stop everything with [bold]mentornet stack down[/bold] (or make down).")


@stack_app.command("down")
def stack_down() -> None:
    """Stop exactly what `stack up` started."""
    from shared.local.stack import StackConfig, down

    stopped = down(StackConfig())
    console.print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")


@stack_app.command("status")
def stack_status() -> None:
    """What runs where."""
    from shared.local.stack import StackConfig, status

    _print_status(status(StackConfig()))


def _print_status(rows: list[Any]) -> None:
    table = Table("component", "state", "pid", "address", "log")
    for row in rows:
        state = "[green]running[/green]" if row.running else "[red]stopped[/red]"
        table.add_row(row.name, state, str(row.pid or ""), row.address or "", str(row.log or ""))
    console.print(table)


# --- database and topics ---------------------------------------------------------------------


@app.command()
def migrate(database_url: DatabaseOption = None) -> None:
    """Apply the SQL migrations of every service (safe to run concurrently: advisory lock)."""
    from services.registry import migrate_all as apply

    applied = run(apply(database(database_url)))
    console.print(
        f"applied {len(applied)} migration(s)" + (": " + ", ".join(applied) if applied else "")
    )


@app.command("db-roles")
def db_roles(
    database_url: DatabaseOption = None,
    password_file: Annotated[
        Path | None,
        typer.Option(
            help="A folder with one file per service, or a file of `service=password` lines "
            "(default: PROFILES_DB_PASSWORD, MATCHING_DB_PASSWORD, NOTIFICATIONS_DB_PASSWORD)."
        ),
    ] = None,
    service: Annotated[
        list[str] | None, typer.Option(help="Only this service (repeatable; default: all).")
    ] = None,
) -> None:
    """Create or update one login role per service (mentornet_<service>) with only its grants.

    Run it after `migrate`, as the user that owns the schemas; see docs/security.md."""
    from shared.ops.roles import RolesReport, create_service_roles, load_passwords

    async def go() -> RolesReport:
        passwords = load_passwords(service, password_file)
        return await create_service_roles(database(database_url), passwords)

    report = run(go())
    for role in report.created + report.updated:
        console.print(
            f"{role}: {'created' if role in report.created else 'password and grants updated'}"
        )
    if not report.public_schema_locked:
        err.print(
            "[yellow]warning:[/yellow] every role may create objects in schema public; "
            "its owner should REVOKE CREATE ON SCHEMA public FROM PUBLIC"
        )


@topics_app.command("create")
def topics_create(
    bootstrap_servers: BootstrapOption = None,
    replication: Annotated[
        int, typer.Option(help="Replication factor (1 for a single broker).")
    ] = 1,
) -> None:
    """Create every topic of the registry that does not exist yet."""
    from shared.runtime.topic_admin import create_topics

    created = run(create_topics(bootstrap(bootstrap_servers), replication))
    console.print(
        f"created {len(created)} topic(s)" + (": " + ", ".join(created) if created else "")
    )


@topics_app.command("describe")
def topics_describe(bootstrap_servers: BootstrapOption = None) -> None:
    """Each topic of the registry: key, partitions, cleanup, and whether the cluster has it."""
    from shared.runtime.topic_admin import describe_topics

    rows = run(describe_topics(bootstrap(bootstrap_servers)))
    table = Table("topic", "exists", "partitions", "key", "cleanup")
    for r in rows:
        partitions = f"{r['partitions']}/{r['expected_partitions']}"
        table.add_row(
            r["topic"],
            "yes" if r["exists"] else "[red]no[/red]",
            partitions,
            r["key"],
            r["cleanup_policy"],
        )
    console.print(table)


# --- schemas ------------------------------------------------------------------------------------


@schemas_app.command("export")
def schemas_export(
    directory: Annotated[Path, typer.Argument(help="Folder to write into.")],
) -> None:
    """Write a JSON Schema per event and an AsyncAPI document per service."""
    from shared.ops.schemas import export

    written = export(directory)
    console.print(f"wrote {len(written)} files to {directory}")


SnapshotDir = Annotated[
    Path, typer.Argument(help="The committed snapshot of contract v1's JSON Schemas.")
]


@schemas_app.command("snapshot")
def schemas_snapshot(
    directory: SnapshotDir = Path("docs/schemas/v1"),
    allow_narrowing: Annotated[
        bool, typer.Option(help="Record it even if it narrows v1 (a fix of the snapshot itself).")
    ] = False,
) -> None:
    """Record the contract's JSON Schemas (one per event) after it grew; refuses a narrowing."""
    from shared.ops.compat import compare, write_snapshot

    problems = compare(directory)[0] if any(directory.glob("*.schema.json")) else []
    if problems and not allow_narrowing:
        _narrowed(problems, "not recorded (--allow-narrowing only to fix the snapshot itself)")
    written = write_snapshot(directory)
    console.print(f"wrote {len(written)} schemas to {directory}")


@schemas_app.command("check")
def schemas_check(directory: SnapshotDir = Path("docs/schemas/v1")) -> None:
    """Compare the contract with the snapshot: exit 1 on a narrowing, else print what grew."""
    from shared.ops.compat import compare, stale_files

    try:
        problems, growth = compare(directory)
    except (FileNotFoundError, ValueError) as exc:
        fail(exc)
        raise typer.Exit(1) from None
    if problems:
        _narrowed(problems, "contract v1 only grows")
    console.print("compatible", highlight=False)
    for line in growth:
        console.print(f"  grew: {line}", highlight=False, markup=False)
    if stale_files(directory):
        console.print("the snapshot is out of date: record the growth with `make schemas-snapshot`")


def _narrowed(problems: list[str], why: str) -> None:
    for line in problems:
        console.print(f"narrowed: {line}", highlight=False, markup=False)
    fail(RuntimeError(f"{len(problems)} narrowing(s): {why}"))
    raise typer.Exit(1)


# --- simulate -------------------------------------------------------------------------------


@app.command()
def simulate(
    tenant: Annotated[
        str, typer.Option(help="Organisation id of the simulated HR system.")
    ] = "acme",
    mentors: Annotated[int, typer.Option(min=0)] = 20,
    mentees: Annotated[int, typer.Option(min=0)] = 40,
    programs: Annotated[int, typer.Option(min=1)] = 2,
    rate: Annotated[float, typer.Option(min=0.1, help="Events per second.")] = 200.0,
    seed: Annotated[int, typer.Option()] = 7,
    show_proposals: Annotated[bool, typer.Option(help="Wait for proposals and print them.")] = True,
    wait: Annotated[float, typer.Option(help="Seconds to wait for proposals.")] = 60.0,
    life: Annotated[
        bool,
        typer.Option(
            help="Also play the apps' side with 30-second relationships (answers, sessions, an "
            "early ending, check-ins, closing feedback), then print the tenant's report."
        ),
    ] = False,
    bootstrap_servers: BootstrapOption = None,
) -> None:
    """Publish a synthetic HR stream (mentors, then mentees) at a chosen rate."""
    from shared.local.demo import simulate as go
    from shared.local.stack import StackConfig, operator_mail_server

    # the local stack's mail catcher keeps what notifications sends (not with a real server)
    mail_dir = StackConfig().mail_dir if operator_mail_server() is None else None
    for_you = run(
        go(
            bootstrap(bootstrap_servers),
            tenant,
            mentors,
            mentees,
            programs,
            rate,
            seed,
            show_proposals,
            wait,
            life=life,
            mail_dir=mail_dir,
        )
    )
    if life:
        report_command(tenant=tenant, timeout=60.0, bootstrap_servers=bootstrap_servers)
    if for_you:  # plain, unwrapped: the link must stay one line to be copied
        typer.echo(f"\n{for_you}")


app.command("report")(report_command)

app.command("import")(import_command)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith("shared.local"):
            raise
        # `stack` and `simulate` drive the local stack, which ships with the source tree only
        fail(RuntimeError("this command needs the source tree (a clone with `make install`)"))
        sys.exit(1)
    except Exception as exc:  # a user's mistake or an outage: one line, not a traceback
        fail(exc)
        sys.exit(1)
