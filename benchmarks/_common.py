"""What every benchmark shares: arguments, real infrastructure, memory readings, JSON output."""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import statistics
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# The committed record of measurements; the README's "last measured" table is generated from it.
RESULTS = Path(__file__).parent / "results"
VARIANT = re.compile(r"[a-z0-9][a-z0-9_-]*")

# Set by `arguments` from --record, read by `emit`: every benchmark records without its emit call
# having to pass the flag along.
_recording = False


def arguments(
    description: str, extra: Sequence[tuple[str, dict[str, Any]]] = ()
) -> argparse.Namespace:
    global _recording
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="a small size that CI can afford")
    parser.add_argument(
        "--record",
        action="store_true",
        help="also write the result to benchmarks/results/ (then: python -m benchmarks.readme)",
    )
    for flag, options in extra:
        parser.add_argument(flag, **options)
    args = parser.parse_args()
    if args.record and args.quick:
        parser.error("--record refuses --quick: quick figures are not measurements")
    _recording = args.record
    return args


def peak_rss_mb(pid: int | None = None) -> float:
    """Peak resident memory: of this process, or of another one via /proc (VmHWM)."""
    if pid is None:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process used so far (/proc/<pid>/stat, in clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def database_cpu_seconds(postmaster: int | None) -> float:
    """CPU of PostgreSQL: the postmaster, its live backends, and the children it has reaped
    (cutime, cstime). NaN when the database is not a local process (containers)."""
    if postmaster is None:
        return float("nan")
    try:
        stat = Path(f"/proc/{postmaster}/stat").read_text().rsplit(")", 1)[1].split()
        total = sum(int(f) for f in stat[11:15]) / os.sysconf("SC_CLK_TCK")
        children = Path(f"/proc/{postmaster}/task/{postmaster}/children").read_text().split()
        return total + sum(cpu_seconds(int(child)) for child in children)
    except (OSError, ValueError):
        return float("nan")


def parent_pid(backend: int) -> int | None:
    """The database server's main process (a backend's parent), when it runs on this machine."""
    try:
        fields = Path(f"/proc/{backend}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[1])  # its parent
    except (OSError, ValueError):
        return None


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def machine() -> dict[str, Any]:
    """What the figures were measured on. Recorded results are committed: facts about the
    hardware and software only, never a hostname or a path."""
    return {
        "cpus": os.cpu_count(),
        "cpu_model": proc_field("/proc/cpuinfo", "model name"),
        "memory_mb": memory_mb(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def proc_field(path: str, name: str) -> str | None:
    """The first `name: value` line of a /proc file (None off Linux)."""
    try:
        with open(path) as lines:
            for line in lines:
                key, _, value = line.partition(":")
                if key.strip() == name:
                    return value.strip()
    except OSError:
        pass
    return None


def memory_mb() -> int | None:
    total = proc_field("/proc/meminfo", "MemTotal")  # "24683772 kB"
    return int(total.split()[0]) // 1024 if total else None


def emit(result: dict[str, Any]) -> None:
    """The benchmark's answer: one JSON object, always the last line printed. With --record, also
    written to benchmarks/results/."""
    if _recording:
        record(result)
    sys.stdout.flush()
    print(json.dumps(result, sort_keys=True, default=str), flush=True)


def record(result: dict[str, Any], results: Path = RESULTS) -> Path:
    """Write the result, with when it was measured, to results/<benchmark>[.<variant>].json: the
    benchmark names its variant (`"variant": "replicas-2"`) when a run is not its default size,
    so one run never overwrites another kind."""
    name = str(result["benchmark"])
    variant = result.get("variant")
    if variant is not None:
        if not VARIANT.fullmatch(str(variant)):
            raise ValueError(f"variant {variant!r}: lowercase letters, digits, '-' and '_' only")
        name = f"{name}.{variant}"
    recorded = {
        **result,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": result.get("machine") or machine(),
    }
    results.mkdir(exist_ok=True)
    path = results / f"{name}.json"
    path.write_text(json.dumps(recorded, indent=2, sort_keys=True, default=str) + "\n")
    print(f"recorded in {path}", file=sys.stderr)
    return path
