"""`mentornet report`: program health from the topics alone, in the terminal or as an HTML page.

It reads what any analytics team may read (no database), validates every record against the
contract as the services do (ingress topics may hold rejected records), and leaves the figures to
the pure functions of `shared.ops.analytics`. The HTML page is one self-contained file with inline SVG
charts: it opens on a machine without internet and can be mailed as it is.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import pydantic_core
import typer
from rich.console import Console
from rich.table import Table

from shared.contract.envelope import Rejected, decode_record
from shared.contract.topics import TOPICS
from shared.ops.analytics import (
    LOAD_EDGES,
    LOAD_LABELS,
    TIME_EDGES,
    TIME_LABELS,
    ProgramHealth,
    Summary,
    histogram,
    program_health,
    waiting_because,
)
from shared.ops.cli.common import BootstrapOption, run
from shared.ops.cli.dlq import kafka_settings, read_topics
from shared.runtime.settings import KafkaSettings

REPORT_TOPICS = (
    "enrolment-updated",
    "enrolment-ended",
    "match-proposed",
    "match-confirmed",
    "match-ended",
    "relationship-stalled",
    "feedback-requested",
    "session-completed",
    "match-responded",
    "feedback-given",
    "mentee-waiting",
)

INGRESS = frozenset(t for t in REPORT_TOPICS if TOPICS[t].ingress)  # may hold rejected records

console = Console()


def _canonical(value: bytes | None) -> dict[str, Any] | None:
    """A canonical event as a dict; None for anything that is not one (never expected)."""
    try:
        body = pydantic_core.from_json(value or b"")  # about twice as fast as json.loads
    except ValueError:
        return None
    if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
        return None
    if not all(isinstance(body.get(k), str) for k in ("type", "tenantid", "time")):
        return None
    return body


async def collect_events(
    kafka: KafkaSettings, tenant: str | None, timeout: float, from_beginning: bool
) -> tuple[list[dict[str, Any]], int]:
    """Valid events of the report's topics (one tenant's if given) and how many were invalid.

    Ingress records are validated as the services validate them (a rejected one never happened);
    canonical ones were written by mentornet and are only parsed.
    """
    needle = tenant.encode() if tenant else None
    events: list[dict[str, Any]] = []
    invalid = 0
    async for record in read_topics(
        kafka, REPORT_TOPICS, timeout=timeout, from_beginning=from_beginning
    ):
        headers = tuple(record.headers or ())
        # Cheap pre-filter: another tenant's record cannot contain the tenant id anywhere.
        if (
            needle
            and needle not in (record.value or b"")
            and (("ce_tenantid", needle) not in headers)
        ):
            continue
        body: dict[str, Any] | None
        if record.topic in INGRESS:
            try:
                event = decode_record(record.value, headers, topic=record.topic, key=record.key)
            except Rejected:
                invalid += 1  # a service dead-lettered it: for mentornet it never happened
                continue
            body = event.to_json()
        else:
            body = _canonical(record.value)  # written by mentornet itself, already valid
        if body is None:
            invalid += 1
        elif tenant is None or body["tenantid"] == tenant:
            events.append(body)
    return events, invalid


# --- terminal ---------------------------------------------------------------------------------


def duration(seconds: float | None) -> str:
    """A duration in the unit a person reads best: s, min, h or d."""
    if seconds is None:
        return "-"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _summary(s: Summary, what: str) -> str:
    if not s.count:
        return f"- (no {what}s yet)"
    return f"median {duration(s.median)}, p90 {duration(s.p90)} ({s.count} {what}{'s' * (s.count > 1)})"


def _share(value: float | None, part: int, whole: int, what: str) -> str:
    return f"{percent(value)} ({part} of {whole} {what})"


def rows(h: ProgramHealth) -> list[tuple[str, str]]:
    """The report of one program as (metric, value) lines: the same in terminal and HTML."""
    return [
        ("mentors enrolled", str(h.mentors)),
        ("mentees enrolled", f"{h.mentees} ({h.mentees_waiting} waiting)"),
        ("waiting because", waiting_because(h.waiting_reasons)),
        ("time to first proposal", _summary(h.time_to_proposal, "mentee")),
        ("time to confirmation", _summary(h.time_to_confirmation, "mentee")),
        ("time to answer a proposal", _summary(h.response_time, "answer")),
        (
            "proposals",
            f"{h.proposals} (accepted {h.accepted}, declined {h.declined}, expired {h.expired},"
            f" cancelled {h.cancelled}, pending {h.pending})",
        ),
        ("acceptance rate", f"{percent(h.acceptance_rate)} ({h.accepted} of {h.decided} decided)"),
        (
            "relationships",
            f"{h.relationships} confirmed ({h.open_relationships} open,"
            f" {h.completed_relationships} completed, {h.ended_early_relationships} ended early,"
            f" {h.cancelled_relationships} cancelled)",
        ),
        (
            "ended early by reason",
            ", ".join(f"{r.replace('_', ' ')} {n}" for r, n in h.ended_early_reasons.items())
            or "-",
        ),
        ("relationship length", _summary(h.relationship_length, "closed relationship")),
        (
            "sessions per relationship",
            "-"
            if h.sessions_per_relationship is None
            else f"{h.sessions_per_relationship:.2f} ({h.sessions} sessions)",
        ),
        (
            "check-in response rate",
            _share(
                h.checkin_response_rate,
                h.checkins_answered,
                h.checkin_requests,
                "check-in requests answered",
            ),
        ),
        ("stalled now", f"{h.stalled_relationships} of {h.open_relationships} open relationships"),
        (
            "goal attainment",
            _share(
                h.goal_attainment,
                h.goals_reached,
                h.goals_reported,
                "goals reached at least partly",
            ),
        ),
        (
            "win/win rate",
            _share(
                h.win_win_rate,
                h.win_win,
                h.closed_with_both_feedbacks,
                "closed with both closing feedbacks",
            ),
        ),
        (
            "mentor load",
            f"mean {percent(h.load_mean)}, max {percent(h.load_max)}, Gini "
            + ("-" if h.load_gini is None else f"{h.load_gini:.3f}"),
        ),
    ]


def print_report(healths: Sequence[ProgramHealth]) -> None:
    for h in healths:
        table = Table("metric", "value", title=f"{h.tenant} / {h.program}", title_justify="left")
        for metric, value in rows(h):
            table.add_row(metric, value)
        console.print(table)


# --- HTML -----------------------------------------------------------------------------------


def bar_chart(title: str, labels: Sequence[str], values: Sequence[int], unit: str) -> str:
    """A small vertical bar chart as inline SVG (no script, no external resource)."""
    width, height, top, bottom, left = 560, 220, 28, 40, 12
    slot = (width - 2 * left) / max(len(values), 1)
    peak = max(values, default=0) or 1
    plot = height - top - bottom
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{html.escape(title)}">',
        f'<text x="{left}" y="16" class="title">{html.escape(title)}</text>',
        f'<line x1="{left}" y1="{top + plot}" x2="{width - left}" y2="{top + plot}" class="axis"/>',
    ]
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        bar = plot * value / peak
        x = left + i * slot + slot * 0.15
        y = top + plot - bar
        parts += [
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{slot * 0.7:.1f}" height="{bar:.1f}" '
            f'class="bar"><title>{html.escape(label)}: {value} {unit}</title></rect>',
            f'<text x="{x + slot * 0.35:.1f}" y="{y - 4:.1f}" class="value">{value}</text>',
            f'<text x="{x + slot * 0.35:.1f}" y="{top + plot + 16}" class="label">'
            f"{html.escape(label)}</text>",
        ]
    parts.append("</svg>")
    return "".join(parts)


STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#1f2933}
h1{margin-bottom:.2rem} .meta{color:#616e7c;margin-top:0}
section{border-top:1px solid #cbd2d9;padding-top:1rem;margin-top:1.5rem}
table{border-collapse:collapse;margin:.5rem 0 1rem} td{padding:.25rem 1rem .25rem 0}
td:first-child{color:#52606d} .charts{display:flex;flex-wrap:wrap;gap:1rem}
svg .bar{fill:#3e7bfa} svg .axis{stroke:#9aa5b1} svg text{font-size:12px;fill:#323f4b}
svg .title{font-weight:600;font-size:13px} svg .value,svg .label{text-anchor:middle}
"""


def render_html(healths: Sequence[ProgramHealth], scope: str, generated_at: datetime) -> str:
    """The whole report as one HTML document; definitions link to nothing external."""
    sections = []
    for h in healths:
        table = "".join(
            f"<tr><td>{html.escape(m)}</td><td>{html.escape(v)}</td></tr>" for m, v in rows(h)
        )
        charts = [
            bar_chart(
                "Mentor load (open proposals and relationships / capacity)",
                LOAD_LABELS,
                histogram(h.loads, LOAD_EDGES),
                "mentors",
            ),
            bar_chart(
                "Time from registration received to first proposal",
                TIME_LABELS,
                histogram(h.time_to_proposal.values, TIME_EDGES),
                "mentees",
            ),
            bar_chart(
                "Time from registration received to confirmed relationship",
                TIME_LABELS,
                histogram(h.time_to_confirmation.values, TIME_EDGES),
                "mentees",
            ),
        ]
        sections.append(
            f"<section><h2>{html.escape(h.tenant)} / {html.escape(h.program)}</h2>"
            f'<table>{table}</table><div class="charts">{"".join(charts)}</div></section>'
        )
    body = "".join(sections) or "<p>No events in scope.</p>"
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        "<title>mentornet program health</title>"
        f"<style>{STYLE}</style></head><body><h1>mentornet program health</h1>"
        f'<p class="meta">{html.escape(scope)}; generated {generated_at:%Y-%m-%d %H:%M} UTC '
        "from the Kafka topics. Definitions: docs/analytics-guide.md.</p>"
        f"{body}</body></html>\n"
    )


# --- command ------------------------------------------------------------------------------------


def report_command(
    tenant: Annotated[str | None, typer.Option(help="Only this organisation.")] = None,
    program: Annotated[str | None, typer.Option(help="Only this program id.")] = None,
    html_file: Annotated[
        Path | None, typer.Option("--html", help="Also write a self-contained HTML page here.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the figures as JSON instead of tables.")
    ] = False,
    from_beginning: Annotated[
        bool,
        typer.Option(
            "--from-beginning/--live",
            help="Everything retained, up to the end at start (default); or only what is "
            "published during --timeout seconds.",
        ),
    ] = True,
    timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds: the longest read, or the live window.")
    ] = 120.0,
    bootstrap_servers: BootstrapOption = None,
) -> None:
    """Program health from the topics: matching speed, acceptance, relationships, check-ins,
    goals, win/win, load."""
    events, invalid = run(
        collect_events(kafka_settings(bootstrap_servers), tenant, timeout, from_beginning)
    )
    healths = program_health(events, tenant=tenant, program=program)
    scope = " / ".join(
        [f"tenant {tenant}" if tenant else "all tenants"]
        + ([f"program {program}"] if program else [])
    )
    if as_json:
        print(json.dumps([h.as_dict() for h in healths], indent=2))
    elif healths:
        print_report(healths)
    if html_file is not None:
        try:
            html_file.write_text(render_html(healths, scope, datetime.now(UTC)), encoding="utf-8")
        except OSError as exc:
            Console(stderr=True).print(
                f"[red]error:[/red] cannot write {html_file}: {exc.strerror}"
            )
            raise typer.Exit(1) from None
    notes = Console(stderr=True) if as_json else console
    if not healths:
        notes.print(f"no events for {scope}")
    notes.print(
        f"{len(events)} events read ({scope})"
        + (f", {invalid} invalid ingress records ignored" if invalid else "")
        + (f"; wrote {html_file}" if html_file else "")
    )
