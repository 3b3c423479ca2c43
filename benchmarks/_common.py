"""What every benchmark shares: arguments, real infrastructure, memory readings, JSON output."""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
from collections.abc import Sequence
from typing import Any


def arguments(
    description: str, extra: Sequence[tuple[str, dict[str, Any]]] = ()
) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="a small size that CI can afford")
    for flag, options in extra:
        parser.add_argument(flag, **options)
    return parser.parse_args()


def peak_rss_mb(pid: int | None = None) -> float:
    """Peak resident memory: of this process, or of another one via /proc (VmHWM)."""
    if pid is None:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def emit(result: dict[str, Any]) -> None:
    """The benchmark's answer: one JSON object, always the last line printed."""
    sys.stdout.flush()
    print(json.dumps(result, sort_keys=True, default=str), flush=True)
