"""This machine's side of the stack tests: homes the stack can use, and what still runs."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def scratch_home(prefix: str) -> Path:
    """A fresh folder for a stack of a test's own. Not pytest's tmp_path: its parents are 0700,
    and as root PostgreSQL runs as another user, which must reach its data directory."""
    home = Path(tempfile.mkdtemp(prefix=prefix))
    home.chmod(0o755)
    return home


def alive(pid: int) -> bool:
    """Running, and not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def processes_mentioning(text: str) -> list[int]:
    """Live processes (this one aside) whose command line names `text`."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                if text.encode() in (proc / "cmdline").read_bytes() and alive(int(proc.name)):
                    found.append(int(proc.name))
            except OSError:
                continue
    return found
