"""What every `mentornet` command shares: options, and running with one-line errors."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

T = TypeVar("T")

BootstrapOption = Annotated[
    str | None,
    typer.Option(
        "--bootstrap-servers",
        "-b",
        help="Kafka (default: KAFKA_BOOTSTRAP_SERVERS or 127.0.0.1:9092).",
    ),
]
SigningKeyFileOption = Annotated[
    Path | None,
    typer.Option(
        help="A file holding the tenant's signing key (as in the services' INGRESS_SIGNING_KEYS): "
        "every event is signed with it (needed for a tenant whose events must be signed).",
        exists=True,
        dir_okay=False,
        readable=True,
    ),
]
DatabaseOption = Annotated[
    str | None,
    typer.Option("--database-url", help="PostgreSQL (default: DATABASE_URL or the local stack's)."),
]


def signing_key(path: Path | None) -> bytes | None:
    """The key as the services read it (the text of INGRESS_SIGNING_KEYS' value), minus the line
    end an editor adds; raises ValueError for an empty file."""
    if path is None:
        return None
    key = path.read_text(encoding="utf-8").strip()
    if not key:
        raise ValueError(f"{path} is empty: it must hold the tenant's signing key")
    return key.encode()


def fail(exc: BaseException) -> None:
    """Print a failure as one line on stderr: never wrapped, brackets ("[Errno 111]") kept."""
    message = str(exc) or type(exc).__name__
    Console(stderr=True).print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine; any failure becomes exactly one line on stderr and exit status 1."""
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # the error line says it all
    try:
        return asyncio.run(coro)
    except (typer.Exit, typer.Abort):
        raise
    except Exception as exc:
        fail(exc)
        raise typer.Exit(1) from None
