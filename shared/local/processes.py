"""Services run as their own processes, exactly as operators run them (`python -m services.X`),
for the tests and the benchmarks: start, wait until ready, signal, stop, read the log."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from shared.local.kafka import wait_group_stable
from shared.local.probes import NotReady, answers, free_port, wait_until
from shared.local.stack import REPO_ROOT

LOGS = REPO_ROOT / ".stack" / "test-logs"


def stop_process(
    process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 30.0
) -> int:
    """Send `sig` and wait; SIGKILL what outlives `timeout`. Returns the exit code."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


@dataclass
class ServiceProcess:
    """One service run as its own process, logging to `log`."""

    name: str
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    log: Path | None = None
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log = self.log or LOGS / f"{self.name}-{self.port}.log"
        self.log.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "LOG_LEVEL": "INFO", **self.env, "HTTP_PORT": str(self.port)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", f"services.{self.name}"],
            cwd=REPO_ROOT,
            env=env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    async def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until /readyz answers (Kafka and PostgreSQL reachable); fails with the log tail."""
        try:
            await wait_until(lambda: answers(f"{self.url}/readyz"), timeout, alive=self.alive)
        except NotReady as problem:
            raise NotReady(f"{self.name} {problem}\n{self.tail()}") from None

    async def wait_assigned(self, timeout: float = 60.0) -> None:
        """Wait until the service's consumer group is stable with every partition assigned."""
        bootstrap, group = self.env["KAFKA_BOOTSTRAP_SERVERS"], self.env["CONSUMER_GROUP"]
        await wait_group_stable(bootstrap, group, timeout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        return stop_process(self.process, sig, timeout) if self.process else None

    def tail(self, lines: int = 40) -> str:
        if not self.log or not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


class Services:
    """Named service processes (e.g. `matching-1` and `matching-2` of one service).

    `async with` starts them all, waits until each is ready and yields them by label; on exit
    (or if one never gets ready) it stops them all with SIGTERM."""

    def __init__(self, log_dir: Path | None = None, ready_timeout: float = 60.0) -> None:
        self.procs: dict[str, ServiceProcess] = {}
        self.log_dir = log_dir
        self.ready_timeout = ready_timeout

    def add(self, label: str, service: str, env: Mapping[str, str]) -> ServiceProcess:
        proc = ServiceProcess(service, dict(env))
        if self.log_dir is not None:
            proc.log = self.log_dir / f"{label}.log"
        self.procs[label] = proc
        return proc

    def __getitem__(self, label: str) -> ServiceProcess:
        return self.procs[label]

    async def start(self, *labels: str) -> None:
        """Start these (default: all) and wait until each is ready."""
        chosen = [self.procs[label] for label in labels or self.procs]
        for proc in chosen:
            proc.start()
        await asyncio.gather(*(p.wait_ready(self.ready_timeout) for p in chosen))

    async def restart(self, label: str) -> None:
        await self.start(label)

    def pids(self) -> dict[str, int | None]:
        return {k: p.process.pid if p.process else None for k, p in self.procs.items()}

    def alive(self) -> dict[str, bool]:
        return {k: p.alive() for k, p in self.procs.items()}

    async def stop_all(self) -> None:
        await asyncio.gather(*(asyncio.to_thread(p.stop) for p in self.procs.values()))

    async def __aenter__(self) -> dict[str, ServiceProcess]:
        try:
            await self.start()
        except BaseException:
            await self.stop_all()
            raise
        return self.procs

    async def __aexit__(self, *exc: object) -> None:
        await self.stop_all()


def running(
    names: Iterable[str], env: Mapping[str, str], groups: Mapping[str, str] | None = None
) -> Services:
    """`async with running(names, env) as procs`: each service once, labelled by its name;
    `groups` gives some of them a consumer group (default: the service's own)."""
    services = Services()
    for name in names:
        chosen = {"CONSUMER_GROUP": groups[name]} if groups and name in groups else {}
        services.add(name, name, {**env, **chosen})
    return services
