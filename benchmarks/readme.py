"""readme: the README's "last measured" table, generated from the recorded benchmark results.

    python -m benchmarks.readme [--check]

A benchmark run with --record writes its JSON to benchmarks/results/; this rewrites the part of
README.md between the last-measured markers from those files, so figures are never typed by
hand. A row says what the benchmark's own JSON says, its targets and whether it met them included:
nothing is judged here. --check changes nothing and exits 1 when README.md differs from what would
be generated (the unit tests run it).
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks._common import RESULTS

README = Path(__file__).parent.parent / "README.md"
START = "<!-- last-measured:start -->"
END = "<!-- last-measured:end -->"
NONE = "—"
# The README's order; a benchmark not named here comes after them, by name.
ORDER = (
    "kafka_baseline",
    "ingest",
    "http_ingest",
    "matching",
    "match_quality",
    "matching_continuous",
    "notify",
)
MATCHERS = ("new", "fixed", "greedy_exact", "random")  # match_quality's, in the README's order
# What says which machine measured a figure; a benchmark may add more (library versions).
MACHINE = ("cpu_model", "cpus", "memory_mb", "platform", "python")


class ResultError(Exception):
    """A result file the table cannot be generated from: the message names the file."""


@dataclass(frozen=True)
class Result:
    name: str  # the file's stem: benchmark[.variant]
    figures: dict[str, Any]

    @property
    def benchmark(self) -> str:
        return str(self.figures["benchmark"])


@dataclass(frozen=True)
class Row:
    """One benchmark's cells: its size, its key figures, its targets (met? and date are common)."""

    size: str
    measured: str
    target: str = NONE


# --- formatting ----------------------------------------------------------------------------------


def number(value: Any) -> str:
    """Thousands separators for numbers; yes/no for booleans; anything else as it is."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return f"{value:,}"
    return str(value)


def get(figures: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path ("http.latency_ms.p99"), None when any step is absent."""
    value: Any = figures
    for key in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def fig(text: str, *values: Any) -> str | None:
    """`text` with each {} filled by a formatted value; None when a value is absent, so a row shows
    what its JSON has and skips the rest."""
    if any(value is None for value in values):
        return None
    return text.format(*(number(value) for value in values))


def join(*parts: str | None, sep: str = ", ") -> str:
    return sep.join(part for part in parts if part) or NONE


def targets(figures: Mapping[str, Any], phrases: Mapping[str, str]) -> str:
    """The JSON's `targets` in words: a known key by its phrase, any other as `key value`."""
    if isinstance(figures.get("target"), str):
        return figures["target"]
    wanted = figures.get("targets")
    if not isinstance(wanted, Mapping):
        return NONE
    return join(
        *(
            phrases[key].format(number(value)) if key in phrases else f"{key} {number(value)}"
            for key, value in wanted.items()
        )
    )


def met(figures: Mapping[str, Any]) -> str:
    """Whether the targets were met, as the benchmark decided: its `target_met`, or its targets
    when they are verdicts (name: true/false). Without a verdict: "not stated"."""
    verdict = figures.get("target_met")
    if isinstance(verdict, bool):
        return number(verdict)
    checks = figures.get("targets_met", figures.get("targets"))
    if isinstance(checks, Mapping) and checks and all(isinstance(v, bool) for v in checks.values()):
        missed = [words(name) for name, ok in checks.items() if not ok]
        return "no: " + ", ".join(missed) if missed else "yes"
    if "targets" in figures or "target" in figures:
        return "not stated"
    return NONE


def count(value: Any, thing: str) -> str | None:
    """1 replica, 2 replicas; 1 profiles process, 2 profiles processes."""
    if value is None:
        return None
    return f"{number(value)} {thing}{'' if value == 1 else 'es' if thing.endswith('s') else 's'}"


def words(key: str) -> str:
    return key.replace("win_win", "win/win").replace("_", " ")


def cell(text: str) -> str:
    """Text that cannot break a Markdown table row."""
    return " ".join(text.split()).replace("|", "\\|")


# --- one renderer per benchmark ------------------------------------------------------------------


def kafka_baseline(r: Mapping[str, Any]) -> Row:
    return Row(
        size=join(
            fig("{} messages of {} bytes", r.get("messages"), r.get("message_bytes")),
            fig("{} partitions", r.get("partitions")),
        ),
        measured=join(
            fig("produce {}/s", r.get("produce_msgs_per_s")),
            fig("consume {}/s", r.get("consume_msgs_per_s")),
            fig("consume-and-produce {}/s", r.get("consume_produce_msgs_per_s")),
            fig("peak {} MB", r.get("peak_rss_mb")),
        ),
        target=targets(r, {}),
    )


def ingest(r: Mapping[str, Any]) -> Row:
    return Row(
        size=join(fig("{} events", r.get("events")), count(r.get("replicas"), "profiles process")),
        measured=join(
            fig("{} events/s ({} s)", r.get("events_per_s"), r.get("ingest_s")),
            fig(
                "{} of `kafka_baseline` consume-and-produce ({}/s)",
                r.get("ratio_to_baseline_consume_produce"),
                get(r, "kafka_baseline.consume_produce_msgs_per_s"),
            ),
            fig("peak {} MB per process", r.get("profiles_peak_rss_mb")),
        ),
        target=targets(
            r,
            {
                "events_per_s": "≥ {} events/s",
                "ingest_s_for_200k": "≤ {} s for 200,000",
                "ratio": "≥ {} of the baseline",
                "peak_rss_mb": "< {} MB",
            },
        ),
    )


def http_ingest(r: Mapping[str, Any]) -> Row:
    return Row(
        size=join(
            fig("{} events in batches of {}", r.get("events"), r.get("batch_events")),
            fig("{} requests in flight", r.get("in_flight")),
        ),
        measured=join(
            fig("{} events/s end to end", get(r, "http.events_per_s")),
            fig(
                "**{}** of `ingest` in the same run ({}/s)",
                r.get("ratio_to_kafka_ingest"),
                get(r, "kafka_ingest.events_per_s"),
            ),
            fig("accepted (to the last 202) at {}/s", get(r, "http.accepted_events_per_s")),
            fig(
                "request p50 {} ms, p99 {} ms",
                get(r, "http.latency_ms.p50"),
                get(r, "http.latency_ms.p99"),
            ),
            fig("{} rejected", get(r, "http.rejected")),
            fig("peak {} MB", get(r, "http.profiles_peak_rss_mb")),
        ),
        target=targets(r, {"ratio_to_kafka_ingest": "≥ {} of `ingest`", "rejected": "{} rejected"}),
    )


def matching(r: Mapping[str, Any]) -> Row:
    cohort = get(r, "sections.cohort") or {}
    scale, quality = cohort.get("scale") or {}, cohort.get("quality") or {}
    return Row(
        size=join(
            fig(
                "cohort {} \u00d7 {}",
                get(scale, "instance.mentees"),
                get(scale, "instance.mentors"),
            ),
            fig(
                "exact optimum on {} \u00d7 {}",
                get(quality, "instance.mentees"),
                get(quality, "instance.mentors"),
            ),
        ),
        measured=join(
            fig("{} s", get(scale, "flow.seconds.total")),
            violations(get(scale, "flow.violations")),
            fig("coverage {} of the bound", get(scale, "flow.coverage_of_bound")),
            fig(
                "deferred acceptance {} s, {} of the flow's total",
                get(scale, "deferred_acceptance.seconds.total"),
                scale.get("deferred_acceptance_over_flow"),
            ),
            fig(
                "blocking pairs (estimated for all mentees): flow {}, deferred acceptance {}",
                get(scale, "blocking_pairs.flow.estimate_all_mentees"),
                get(scale, "blocking_pairs.deferred_acceptance.estimate_all_mentees"),
            ),
            fig(
                "of the exact optimum: flow {}, deferred acceptance {}, greedy {}",
                get(quality, "optimum.flow_ratio"),
                get(quality, "optimum.deferred_acceptance_ratio"),
                get(quality, "optimum.greedy_ratio"),
            ),
            fig("peak {} MB", r.get("peak_rss_mb")),
            fig("load average {} before", (r.get("load_average_before") or [None])[0]),
            sep="; ",
        ),
        target=targets(r, {}),
    )


def violations(counts: Any) -> str | None:
    """A checker's counts per rule: "0 violations" when all are 0, else the rules broken."""
    if not isinstance(counts, Mapping):
        return None
    broken = {rule: n for rule, n in counts.items() if n and rule != "total"}
    if not broken:
        return "0 violations"
    return "violations: " + ", ".join(f"{rule} {number(n)}" for rule, n in broken.items())


def match_quality(r: Mapping[str, Any]) -> Row:
    found: Mapping[str, Any] = r.get("matchers") or {}
    first = [name for name in MATCHERS if name in found]  # the new matcher first, random last
    matchers = {name: found[name] for name in [*first, *sorted(set(found) - set(first))]}

    def each(key: str) -> str | None:
        found = {name: m.get(key) for name, m in matchers.items() if m.get(key) is not None}
        return ", ".join(f"{name} {number(v)}" for name, v in found.items()) or None

    return Row(
        size=join(
            fig("seed {}", r.get("seed")),
            fig(
                "{} mentors \u00d7 {} mentees over {} months",
                get(r, "sizes.mentors"),
                get(r, "sizes.mentees"),
                get(r, "sizes.months_of_arrivals"),
            ),
        ),
        measured=join(
            fig("win/win: {}", each("win_win_rate")),
            fig(
                "**{} \u00d7 fixed, {} \u00d7 random**",
                r.get("win_win_over_fixed"),
                r.get("win_win_over_random"),
            ),
            fig("acceptance: {}", each("acceptance_rate")),
            fig("early ends: {}", each("early_end_rate")),
            fig("compatibility of the best assignment: {}", each("compatibility_vs_best")),
            fig("violations: {}", each_total(matchers)),
            fig(
                "learned weights after {} outcomes: **Spearman {}**",
                get(r, "learning.outcomes"),
                get(r, "learning.spearman"),
            ),
            sep="; ",
        ),
        target=join(*(words(name) for name in r.get("targets") or {})),
    )


def each_total(matchers: Mapping[str, Any]) -> str | None:
    totals = {name: get(m, "violations.total") for name, m in matchers.items()}
    shown = [f"{name} {number(v)}" for name, v in totals.items() if v is not None]
    return ", ".join(shown) or None


def matching_continuous(r: Mapping[str, Any]) -> Row:
    runs = r.get("runs_at_200")
    at_200 = None
    if isinstance(runs, list) and runs:
        p50 = " / ".join(number(run.get("latency_ms_p50")) for run in runs)
        p99 = " / ".join(number(run.get("latency_ms_p99")) for run in runs)
        at_200 = f"at 200/s, {len(runs)} runs: p50 {p50} ms, p99 {p99} ms"
    curves = []  # each sweep's p99 at each rate
    steps = r.get("steps")
    for replicas, name in ((1, "one process"), (2, "two")):
        points = [
            f"{number(st.get('latency_ms_p99'))} ms at {number(st.get('rate_per_s'))}/s"
            for st in (steps if isinstance(steps, list) else [])
            if isinstance(st, Mapping) and st.get("replicas") == replicas
        ]
        if points:
            curves.append(f"{name} {', '.join(points)}")
    curve = f"p99 by rate: {'; '.join(curves)}" if curves else None
    peaks = r.get("peak_rss_mb")  # by replica count, then by process
    peak = None
    if isinstance(peaks, Mapping) and peaks:
        largest = max(
            (mb for by_process in peaks.values() if isinstance(by_process, Mapping)
             for mb in by_process.values()),
            default=None,
        )  # fmt: skip
        peak = fig("peak {} MB per process", largest)
    return Row(
        size=join(
            fig(
                "{} mentors in each of {} programs", r.get("mentors_per_program"), r.get("programs")
            ),
            fig("{} s of arrivals per rate", r.get("seconds_per_step")),
        ),
        measured=join(
            fig(
                "one matching process: **{} mentees/s** at most within the p99 target",
                r.get("max_rate_per_s"),
            ),
            at_200,
            fig(
                "two replicas: {} mentees/s, **{} \u00d7 one**",
                r.get("max_rate_per_s_2_replicas"),
                r.get("replicas_ratio"),
            ),
            curve,
            peak,
        ),
        target=targets(
            r,
            {
                "max_rate_per_s": "≥ {} mentees/s",
                "latency_ms_p99": "p99 ≤ {} ms",
                "replicas_ratio": "two replicas ≥ {} \u00d7 one",
            },
        ),
    )


def notify(r: Mapping[str, Any]) -> Row:
    return Row(
        size=join(
            fig("{} notifications", r.get("notifications")),
            count(r.get("replicas"), "replica"),
            fig("{} delivered before", r.get("delivered_before")),
        ),
        measured=join(
            fig("{} deliveries/s ({} s)", r.get("deliveries_per_second"), r.get("seconds")),
            fig("{} duplicates", r.get("duplicates")),
            fig("{} missing", r.get("missing")),
            fig("peak {} MB per replica", r.get("service_peak_rss_mb")),
        ),
        target=targets(r, {}),
    )


def generic(r: Mapping[str, Any]) -> Row:
    """A benchmark this module does not know yet: its numeric top-level figures."""
    numeric = {
        key: value
        for key, value in r.items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }
    return Row(
        size=NONE,
        measured=join(*(f"{key} {number(value)}" for key, value in numeric.items())),
        target=targets(r, {}),
    )


RENDERERS: dict[str, Callable[[Mapping[str, Any]], Row]] = {
    "kafka_baseline": kafka_baseline,
    "ingest": ingest,
    "http_ingest": http_ingest,
    "matching": matching,
    "match_quality": match_quality,
    "matching_continuous": matching_continuous,
    "notify": notify,
}


# --- the table -----------------------------------------------------------------------------------


def load(results: Path) -> list[Result]:
    """Every recorded result, in the README's order."""
    found = []
    for path in sorted(results.glob("*.json")):
        try:
            figures = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise ResultError(f"{path}: not a readable JSON file ({error})") from error
        if not isinstance(figures, dict) or not isinstance(figures.get("benchmark"), str):
            raise ResultError(f"{path}: not a benchmark result (no 'benchmark' field)")
        found.append(Result(path.stem, figures))

    def place(result: Result) -> tuple[int, str]:
        known = result.benchmark in ORDER
        return (ORDER.index(result.benchmark) if known else len(ORDER), result.name)

    return sorted(found, key=place)


def machine_of(result: Result) -> tuple[tuple[str, Any], ...]:
    facts = result.figures.get("machine") or {}
    return tuple((key, facts.get(key)) for key in MACHINE)


def describe(machine: tuple[tuple[str, Any], ...]) -> str:
    facts = dict(machine)
    return join(
        fig("{}", facts.get("cpu_model")),
        fig("{} CPUs", facts.get("cpus")),
        fig("{} MB of memory", facts.get("memory_mb")),
        fig("{}", facts.get("platform")),
        fig("Python {}", facts.get("python")),
    )


def render(results: Sequence[Result]) -> str:
    """The text between the markers: heading, table, machines, what is not recorded yet."""
    machines = list(dict.fromkeys(machine_of(result) for result in results))
    label = {m: chr(ord("A") + i) for i, m in enumerate(machines)}
    dates = sorted({str(r.figures.get("measured_at", ""))[:10] for r in results} - {""})
    when = dates[0] if len(dates) == 1 else f"{dates[0]} to {dates[-1]}" if dates else "never"
    lines = [
        "<!-- generated by `python -m benchmarks.readme` from benchmarks/results/*.json:"
        " record a benchmark with --record, never edit these lines by hand -->",
        f"### Last measured ({when})",
        "",
        "| benchmark | measured | target | met? | date |",
        "|---|---|---|---|---|",
    ]
    for result in results:
        try:
            row = RENDERERS.get(result.benchmark, generic)(result.figures)
        except Exception as error:  # a result the renderer cannot read: say which file
            raise ResultError(f"{result.name}.json: cannot be rendered ({error!r})") from error
        name = f"`{result.benchmark}`"
        variant = result.name.partition(".")[2]
        name += f" `{variant}`" if variant else ""
        name += f" {row.size}" if row.size != NONE else ""
        date = str(result.figures.get("measured_at", ""))[:10] or NONE
        if len(machines) > 1:
            date += f", machine {label[machine_of(result)]}"
        cells = (name, row.measured, row.target, met(result.figures), date)
        lines.append("| " + " | ".join(cell(text) for text in cells) + " |")
    lines.append("")
    for machine in machines:
        title = "Machine" if len(machines) == 1 else f"Machine {label[machine]}"
        origins = sorted(
            {
                str(r.figures["infrastructure"])
                for r in results
                if machine_of(r) == machine and "infrastructure" in r.figures
            }
        )
        where = f"; Kafka and PostgreSQL: {', '.join(origins)}" if origins else ""
        lines.append(f"{title}: {describe(machine)}{where}.")
    recorded = {result.benchmark for result in results}
    missing = [f"`{name}`" for name in ORDER if name not in recorded]
    if missing:
        lines += ["", f"Not recorded yet: {', '.join(missing)}."]
    return "\n".join(lines)


def regenerate(readme: str, section: str) -> str:
    """The README with the text between the markers replaced by `section`."""
    head, start, rest = readme.partition(START)
    _, end, tail = rest.partition(END)
    if not start or not end:
        raise ResultError(f"README.md: the markers {START} and {END} are missing")
    return f"{head}{START}\n{section}\n{END}{tail}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if stale")
    parser.add_argument("--readme", type=Path, default=README)
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    try:
        current = args.readme.read_text()
        wanted = regenerate(current, render(load(args.results)))
    except (OSError, ResultError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if wanted == current:
        print(f"{args.readme}: the last-measured table is up to date")
        return 0
    if args.check:
        diff = difflib.unified_diff(
            current.splitlines(), wanted.splitlines(), "README.md", "generated", lineterm=""
        )
        print("\n".join(diff), file=sys.stderr)
        print(
            f"{args.readme}: the last-measured table is not what {args.results}/*.json generate:"
            " regenerate it with python -m benchmarks.readme (make bench-readme)",
            file=sys.stderr,
        )
        return 1
    args.readme.write_text(wanted)
    print(f"{args.readme}: the last-measured table regenerated from {args.results}/*.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
