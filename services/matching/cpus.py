"""How many CPUs this process may really use, read when a cohort is solved.

`os.cpu_count()` counts the machine's CPUs. A process pinned to some of them (affinity) or in a
container with a CPU quota gets fewer, and more solver threads than that only fight each other.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")


def usable_cpus(cgroup: Path = CGROUP) -> int:
    """The CPUs of this process's affinity, capped by its cgroup's CPU quota; at least 1."""
    affinity = getattr(os, "sched_getaffinity", None)  # not on macOS or Windows
    cpus = len(affinity(0)) if affinity else (os.cpu_count() or 1)
    quota = cpu_quota(cgroup)
    return max(1, cpus if quota is None else min(cpus, quota))


def cpu_quota(cgroup: Path = CGROUP) -> int | None:
    """The cgroup's CPU quota in whole CPUs (rounded up), None without one.

    cgroup v2: `cpu.max` holds "max 100000" (no quota) or "200000 100000" (2 CPUs: quota, then
    period, in microseconds). cgroup v1: `cpu.cfs_quota_us` (-1: no quota) over `cpu.cfs_period_us`,
    in the `cpu` (or `cpu,cpuacct`) hierarchy.
    """
    v2 = cgroup / "cpu.max"
    if v2.is_file():
        quota, _, period = _read(v2).partition(" ")
        return _cpus(quota, period)
    for folder in (cgroup / "cpu", cgroup / "cpu,cpuacct", cgroup):
        if (folder / "cpu.cfs_quota_us").is_file() and (folder / "cpu.cfs_period_us").is_file():
            return _cpus(_read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us"))
    return None


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:  # gone or unreadable: as if there were no quota
        return ""


def _cpus(quota: str, period: str) -> int | None:
    try:
        microseconds, per = int(quota), int(period)
    except ValueError:  # "max", or nothing readable
        return None
    if microseconds <= 0 or per <= 0:  # cgroup v1 writes -1 for no quota
        return None
    return max(1, math.ceil(microseconds / per))
