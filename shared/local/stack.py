"""The local stack without Docker: Kafka (KRaft), PostgreSQL, a mail catcher and the services.

Machines without Docker still need the real broker and database, so this module runs them as
plain processes under one folder (the stack home, default `<repo>/.stack`). Every process it
starts is recorded in `<home>/stack.json`, so `down` stops exactly those and nothing else.

The broker is PLAINTEXT only by default. Given `sasl_ssl_port`, a PEM keystore and SCRAM users,
it also opens a SASL_SSL listener (TLS, SCRAM-SHA-512), as production brokers do; brokers and
controller keep talking PLAINTEXT among themselves on 127.0.0.1. `make_local_tls` writes a
throwaway CA and server certificate for it (the security tests use both).
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.registry import NAMES, migrate_all
from shared.local.probes import NotReady, answers, port_open, wait_until
from shared.runtime.settings import KafkaSettings
from shared.runtime.topic_admin import create_topics

REPO_ROOT = Path(__file__).resolve().parents[2]
KAFKA_VERSION = "4.1.1"
SLF4J_BINDING = "org.apache.logging.log4j:log4j-slf4j-impl:2.24.3"  # Kafka 4.1 uses slf4j 1.7
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
SERVICES: tuple[str, ...] = NAMES  # started in this order, stopped in the reverse
INFRA: tuple[str, ...] = ("kafka", "postgres", "mailcatcher")
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
DB_NAME = DB_USER = DB_PASSWORD = "mentornet"
SCRAM_MECHANISM = "SCRAM-SHA-512"
SCRAM_UNSAFE = frozenset(",[]\"'\\ \t\r\n")  # would break `--add-scram 'SCRAM-SHA-512=[...]'`

Step = Callable[[str], None]


def _print_step(message: str) -> None:
    print(f"stack: {message}", file=sys.stderr, flush=True)


def quiet(message: str) -> None:
    """A Step that says nothing (tests and fault suites start and stop components often)."""


class StackError(RuntimeError):
    """A component could not be prepared or started; the message says why (with log tails)."""


class StackConfig(BaseSettings):
    """Where the stack lives and which ports it uses; every field reads `MENTORNET_<FIELD>`."""

    model_config = SettingsConfigDict(
        env_prefix="MENTORNET_", extra="ignore", populate_by_name=True
    )

    home: Path = Field(default_factory=lambda: REPO_ROOT / ".stack")
    cache: Path = Field(default_factory=lambda: Path("~/.cache/mentornet").expanduser())
    kafka_port: int = 9092
    controller_port: int = Field(9093, validation_alias="MENTORNET_KAFKA_CONTROLLER_PORT")
    pg_port: int = 5433
    smtp_port: int = 1025
    profiles_port: int = 8001
    matching_port: int = 8002
    notifications_port: int = 8003
    with_mailcatcher: bool = True
    # Transport security (off unless `sasl_ssl_port` is set): a SASL_SSL listener with SCRAM.
    sasl_ssl_port: int | None = None
    scram_users: dict[str, SecretStr] = Field(default_factory=dict)  # JSON: {"name": "password"}
    ssl_keystore: Path | None = None  # PEM: the broker's unencrypted PKCS#8 key, then its chain
    ssl_cafile: Path | None = None  # the CA clients trust (KAFKA_SSL_CAFILE)

    @field_validator("home", "cache")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().absolute()

    @field_validator("ssl_keystore", "ssl_cafile")
    @classmethod
    def _absolute_file(cls, value: Path | None) -> Path | None:
        return value.expanduser().absolute() if value is not None else None

    @field_validator("scram_users")
    @classmethod
    def _scram_safe(cls, users: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for name, password in users.items():
            if not name or not password.get_secret_value():
                raise ValueError("SCRAM users need a name and a password")
            if SCRAM_UNSAFE & set(name + password.get_secret_value()):
                raise ValueError(
                    f"SCRAM user {name!r}: names and passwords cannot contain spaces, quotes, "
                    "commas, brackets or backslashes (the broker's format tool splits on them)"
                )
        return users

    @model_validator(mode="after")
    def _security_complete(self) -> StackConfig:
        if self.sasl_ssl_port is not None and self.ssl_keystore is None:
            raise ValueError("a SASL_SSL listener (sasl_ssl_port) needs ssl_keystore (PEM)")
        return self

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def sasl_ssl_bootstrap_servers(self) -> str:
        if self.sasl_ssl_port is None:
            raise ValueError("this stack has no SASL_SSL listener (set sasl_ssl_port)")
        return f"127.0.0.1:{self.sasl_ssl_port}"

    def kafka_settings(self, username: str | None = None) -> KafkaSettings:
        """Client settings for this broker: PLAINTEXT, or SASL_SSL as `username` (a SCRAM user)."""
        if username is None:  # every field given, so no KAFKA_* variable of the caller leaks in
            return KafkaSettings(
                bootstrap_servers=self.bootstrap_servers,
                security_protocol="PLAINTEXT",
                sasl_username=None,
                sasl_password=None,
                ssl_cafile=None,
            )
        if username not in self.scram_users:
            raise ValueError(f"{username!r} is not one of this stack's SCRAM users")
        return KafkaSettings(
            bootstrap_servers=self.sasl_ssl_bootstrap_servers,
            security_protocol="SASL_SSL",
            sasl_username=username,
            sasl_password=self.scram_users[username],
            ssl_cafile=str(self.ssl_cafile) if self.ssl_cafile else None,
        )

    @property
    def database_url(self) -> str:
        return f"postgresql://{DB_USER}:{DB_PASSWORD}@127.0.0.1:{self.pg_port}/{DB_NAME}"

    @property
    def verified_database_url(self) -> str:
        """The database over TLS, its certificate verified against this stack's CA (a secured
        stack only: see `ssl_keystore`)."""
        if self.ssl_cafile is None or self.ssl_keystore is None:
            raise ValueError("this stack's PostgreSQL has no TLS (set ssl_keystore and ssl_cafile)")
        return f"{self.database_url}?sslmode=verify-full&sslrootcert={self.ssl_cafile}"

    @property
    def kafka_libs(self) -> Path:
        return self.cache / f"kafka-{KAFKA_VERSION}" / "libs"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def mail_dir(self) -> Path:
        return self.home / "mail"

    @property
    def pgdata(self) -> Path:
        return self.home / "pgdata"

    @property
    def state_file(self) -> Path:
        return self.home / "stack.json"

    def port_of(self, name: str) -> int:
        """The port a component listens on (`kafka` means its client port)."""
        ports = {"kafka": self.kafka_port, "postgres": self.pg_port, "mailcatcher": self.smtp_port}
        ports.update({s: getattr(self, f"{s}_port") for s in SERVICES})
        if name not in ports:
            raise ValueError(f"unknown stack component {name!r}")
        return int(ports[name])


@dataclass
class ComponentStatus:
    """One line of `mentornet stack status`."""

    name: str
    running: bool
    pid: int | None
    address: str
    log: str


# ---------------------------------------------------------------- processes and state

_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}  # reaped on poll so exited ones don't linger


def _load_state(cfg: StackConfig) -> dict[str, dict[str, Any]]:
    try:
        data: dict[str, dict[str, Any]] = json.loads(cfg.state_file.read_text())
        return data
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _save_state(cfg: StackConfig, state: dict[str, dict[str, Any]]) -> None:
    cfg.home.mkdir(parents=True, exist_ok=True)
    tmp = cfg.state_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    os.replace(tmp, cfg.state_file)


def _record(cfg: StackConfig, name: str, **entry: Any) -> None:
    state = _load_state(cfg)
    state[name] = {"name": name, **entry}
    _save_state(cfg, state)


def _forget(cfg: StackConfig, name: str) -> None:
    state = _load_state(cfg)
    if state.pop(name, None) is not None:
        _save_state(cfg, state)


def _pid_alive(pid: int, command: list[str] | None = None) -> bool:
    """True if `pid` runs (not a zombie) and, when given, still runs `command` (pids get reused)."""
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        _CHILDREN.pop(pid, None)
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    proc = Path(f"/proc/{pid}")
    if not Path("/proc/self").exists():
        return True  # no procfs: trust the signal check
    try:
        if proc.joinpath("stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
        argv = proc.joinpath("cmdline").read_bytes().split(b"\0")[:-1]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return command is None or argv == [c.encode() for c in command]


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except FileNotFoundError:
        return f"({path} does not exist)"
    return f"--- last lines of {path} ---\n" + "\n".join(text)


def _spawn(
    cfg: StackConfig,
    name: str,
    command: list[str],
    log: Path,
    main_log: Path | None = None,
    **kw: Any,
) -> int:
    """Start `command` detached (own session, so `down` can signal its whole group)."""
    if port_open(cfg.port_of(name)):
        raise StackError(
            f"{name}: port {cfg.port_of(name)} is already in use by a process this stack did not "
            f"start; stop it or pick another port (MENTORNET_*_PORT)"
        )
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **kw,
        )
    _CHILDREN[proc.pid] = proc
    _record(
        cfg,
        name,
        pid=proc.pid,
        pgid=proc.pid,
        port=cfg.port_of(name),
        command=command,
        log=str(main_log or log),
    )
    return proc.pid


def _kill_group(pid: int, pgid: int, force: bool = False) -> None:
    """SIGTERM the group, wait up to STOP_TIMEOUT, then SIGKILL (straight away if `force`)."""
    steps = [(signal.SIGTERM, STOP_TIMEOUT)] if not force else []
    for sig, wait in [*steps, (signal.SIGKILL, 5.0)]:
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            _pid_alive(pid)  # reaps our own exited child, so the group can empty
            if not _group_alive(pgid):
                return
            time.sleep(0.1)


async def _wait_ready(
    cfg: StackConfig,
    name: str,
    pid: int,
    check: Callable[[], Awaitable[bool]],
    logs: Sequence[Path],
    spawned: bool,
) -> None:
    """Poll `check` until it passes; fail early if the process exits, with the log tails.

    A process this call spawned that fails to get ready is killed, so nothing half-started stays.
    """
    try:
        await wait_until(check, READY_TIMEOUT, alive=lambda: _pid_alive(pid))
    except NotReady as problem:
        tails = "\n".join(_tail(p) for p in logs)
        if spawned:
            stop_component(cfg, name, kill=True, on_step=quiet)
        raise StackError(f"{name} {problem}\n{tails}") from None


def _port_check(port: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return port_open(port)

    return check


# ---------------------------------------------------------------- Kafka


def ensure_kafka_jars(cfg: StackConfig, on_step: Step = _print_step) -> Path:
    """Resolve the broker jars with Maven once; later runs find the stamp and return at once."""
    libs = cfg.kafka_libs
    if (libs / ".complete").exists():
        return libs
    if shutil.which("mvn") is None:
        raise StackError("Kafka jars: `mvn` not found; install Maven (and Java 17+)")
    on_step(f"resolving Kafka {KAFKA_VERSION} jars with Maven into {libs} (once)")
    base = libs.parent
    base.mkdir(parents=True, exist_ok=True)
    deps = "".join(
        f"<dependency><groupId>{g}</groupId><artifactId>{a}</artifactId>"
        f"<version>{v}</version></dependency>"
        for g, a, v in (
            ("org.apache.kafka", "kafka_2.13", KAFKA_VERSION),
            tuple(SLF4J_BINDING.split(":")),
        )
    )
    (base / "pom.xml").write_text(
        '<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>'
        "<groupId>local</groupId><artifactId>mentornet-kafka-jars</artifactId><version>1</version>"
        f"<packaging>pom</packaging><dependencies>{deps}</dependencies></project>\n"
    )
    tmp = base / f"libs.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    result = subprocess.run(
        [
            *"mvn -q -B -Dstyle.color=never -f".split(),
            str(base / "pom.xml"),
            f"{DEPENDENCY_PLUGIN}:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={tmp}",
        ],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if result.returncode != 0 or not any(tmp.glob("kafka_2.13-*.jar")):
        shutil.rmtree(tmp, ignore_errors=True)
        raise StackError(
            f"Kafka jars: mvn failed ({result.returncode}):\n"
            f"{result.stdout}\n{result.stderr}".rstrip()
        )
    (tmp / ".complete").write_text(f"kafka {KAFKA_VERSION}\n")
    shutil.rmtree(libs, ignore_errors=True)  # a half-written dir from an older layout
    try:
        tmp.rename(libs)
    except OSError:  # another process finished first; its copy is as good as ours
        shutil.rmtree(tmp, ignore_errors=True)
    return libs


def _kafka_files(cfg: StackConfig) -> tuple[Path, Path, Path]:
    """Write server.properties and log4j2.properties; returns them and the data dir."""
    kdir = cfg.home / "kafka"
    data = kdir / "data"
    data.mkdir(parents=True, exist_ok=True)
    props: dict[str, str] = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{cfg.controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{cfg.kafka_port},"
        f"CONTROLLER://127.0.0.1:{cfg.controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{cfg.kafka_port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(data),
        "num.partitions": "3",
        "auto.create.topics.enable": "false",
        "group.initial.rebalance.delay.ms": "0",
        "offsets.topic.num.partitions": "3",
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
    }
    if cfg.sasl_ssl_port is not None:
        props.update(_sasl_ssl_properties(cfg, props))
    server = kdir / "server.properties"
    server.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
    log4j = kdir / "log4j2.properties"
    log4j.write_text(
        "status = error\n"
        "appender.file.type = File\n"
        "appender.file.name = FILE\n"
        "appender.file.fileName = ${sys:kafka.logs.dir}/server.log\n"
        "appender.file.layout.type = PatternLayout\n"
        "appender.file.layout.pattern = [%d] %p %m (%c)%n\n"
        "rootLogger.level = INFO\n"
        "rootLogger.appenderRef.file.ref = FILE\n"
    )
    return server, log4j, data


def _sasl_ssl_properties(cfg: StackConfig, props: dict[str, str]) -> dict[str, str]:
    """The SASL_SSL listener: TLS with the PEM keystore, SCRAM-SHA-512 users from the metadata."""
    listener = f"SASL_SSL://127.0.0.1:{cfg.sasl_ssl_port}"
    scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    return {
        "listeners": f"{props['listeners']},{listener}",
        "advertised.listeners": f"{props['advertised.listeners']},{listener}",
        "listener.security.protocol.map": f"{props['listener.security.protocol.map']},"
        "SASL_SSL:SASL_SSL",
        "sasl.enabled.mechanisms": SCRAM_MECHANISM,
        "listener.name.sasl_ssl.sasl.enabled.mechanisms": SCRAM_MECHANISM,
        f"listener.name.sasl_ssl.{SCRAM_MECHANISM.lower()}.sasl.jaas.config": scram,
        "listener.name.sasl_ssl.ssl.keystore.type": "PEM",
        "listener.name.sasl_ssl.ssl.keystore.location": str(cfg.ssl_keystore),
        "listener.name.sasl_ssl.ssl.client.auth": "none",
        "ssl.enabled.protocols": "TLSv1.3,TLSv1.2",
    }


def _scram_arguments(cfg: StackConfig, data: Path) -> list[str]:
    """`--add-scram` for each SCRAM user; users can only be added when storage is formatted."""
    names_file = data.parent / "scram-users.json"
    if (data / "meta.properties").exists():
        formatted = set(json.loads(names_file.read_text())) if names_file.exists() else set()
        if missing := sorted(set(cfg.scram_users) - formatted):
            raise StackError(
                f"kafka: SCRAM users {missing} are not on this broker; they are added only when "
                f"storage is formatted: stop the broker and delete {data} to re-format"
            )
        return []
    if cfg.scram_users:
        names_file.write_text(json.dumps(sorted(cfg.scram_users)))
    return [
        arg
        for name, password in cfg.scram_users.items()
        for arg in (
            "--add-scram",
            f"{SCRAM_MECHANISM}=[name={name},password={password.get_secret_value()}]",
        )
    ]


def _java() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    if found := shutil.which("java"):
        return found
    raise StackError("kafka: `java` not found; install Java 17+ or set JAVA_HOME")


async def _start_kafka(cfg: StackConfig, on_step: Step) -> None:
    libs = await asyncio.to_thread(ensure_kafka_jars, cfg, on_step)
    java = _java()
    server, log4j, data = _kafka_files(cfg)
    classpath = ["-cp", f"{libs}/*"]
    if cfg.sasl_ssl_port is not None:
        if cfg.ssl_keystore is None or not cfg.ssl_keystore.is_file():
            raise StackError(f"kafka: PEM keystore {cfg.ssl_keystore} does not exist")
        if port_open(cfg.sasl_ssl_port):
            raise StackError(f"kafka: SASL_SSL port {cfg.sasl_ssl_port} is already in use")
    scram = _scram_arguments(cfg, data)
    if not (data / "meta.properties").exists():
        cluster_id = "-"
        while cluster_id.startswith("-"):  # Kafka's own rule for generated cluster ids
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        on_step(f"kafka: formatting storage (cluster id {cluster_id})")
        fmt = await asyncio.to_thread(
            subprocess.run,
            [
                java,
                *classpath,
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id,
                "-c",
                str(server),
                "-g",
                *scram,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if fmt.returncode != 0:
            (data.parent / "scram-users.json").unlink(missing_ok=True)
            output = f"{fmt.stdout}\n{fmt.stderr}"
            for password in cfg.scram_users.values():  # never echo a secret into an error
                output = output.replace(password.get_secret_value(), "[secret]")
            raise StackError(f"kafka: storage format failed:\n{output}")
    kafka_logs = cfg.logs_dir / "kafka"
    kafka_logs.mkdir(parents=True, exist_ok=True)
    command = [
        java,
        "-Xms512m",
        "-Xmx512m",
        "-XX:+UseG1GC",
        f"-Dkafka.logs.dir={kafka_logs}",
        f"-Dlog4j2.configurationFile={log4j}",
        *classpath,
        "kafka.Kafka",
        str(server),
    ]
    secured = f" and SASL_SSL {cfg.sasl_ssl_bootstrap_servers}" if cfg.sasl_ssl_port else ""
    on_step(f"kafka: starting on {cfg.bootstrap_servers}{secured}")
    server_log = kafka_logs / "server.log"
    pid = _spawn(cfg, "kafka", command, cfg.logs_dir / "kafka.log", server_log, cwd=cfg.home)
    await _wait_ready(
        cfg,
        "kafka",
        pid,
        _kafka_check(cfg),
        [server_log, cfg.logs_dir / "kafka.log"],
        spawned=True,
    )


def _kafka_check(cfg: StackConfig) -> Callable[[], Awaitable[bool]]:
    """The broker opens its client listeners once it runs; with SASL_SSL, wait for both."""
    ports = [cfg.kafka_port, *([cfg.sasl_ssl_port] if cfg.sasl_ssl_port else [])]

    async def check() -> bool:
        return all(port_open(p) for p in ports)

    return check


@dataclass(frozen=True)
class LocalTls:
    """A throwaway CA and a server certificate signed by it, as PEM files."""

    cafile: Path  # what clients trust (KAFKA_SSL_CAFILE)
    keystore: Path  # the broker's key, certificate and the CA (StackConfig.ssl_keystore)


def make_local_tls(
    folder: Path, hosts: Sequence[str] = ("127.0.0.1", "localhost"), days: int = 30
) -> LocalTls:
    """Write a CA and a server certificate for `hosts` with the `openssl` command (EC P-256).

    For local stacks and tests only: the CA key is left next to it, unencrypted.
    """
    openssl = shutil.which("openssl")
    if openssl is None:
        raise StackError("TLS: `openssl` not found")
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for host in hosts:
        try:
            names.append(f"IP:{ipaddress.ip_address(host)}")
        except ValueError:
            names.append(f"DNS:{host}")
    (folder / "server.ext").write_text(
        f"subjectAltName={','.join(names)}\n"
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid,issuer\n"
    )
    ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
    steps = [
        # the CA: self-signed, allowed to sign certificates and nothing else
        f"req -x509 {ec} -keyout ca.key -out ca.pem -days {days} -subj /CN=mentornet-local-ca "
        "-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign",
        f"req {ec} -keyout server.key -out server.csr -subj /CN={hosts[0]}",
        "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -extfile server.ext -out server.pem "
        f"-days {days} -set_serial {uuid.uuid4().int >> 64}",
    ]
    for step in steps:
        command = [openssl, *step.split()]
        result = subprocess.run(command, cwd=folder, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise StackError(f"TLS: openssl {' '.join(command[1:3])} failed:\n{result.stderr}")
    keystore = folder / "broker.pem"
    keystore.write_text(
        "".join((folder / f).read_text() for f in ("server.key", "server.pem", "ca.pem"))
    )
    for secret in (folder / "ca.key", folder / "server.key", keystore):
        secret.chmod(0o600)
    return LocalTls(cafile=folder / "ca.pem", keystore=keystore)


# ---------------------------------------------------------------- PostgreSQL


def _pg_bin(tool: str) -> str:
    """A PostgreSQL program: `MENTORNET_PG_BIN`, else the newest /usr/lib/postgresql, else PATH."""
    if env := os.environ.get("MENTORNET_PG_BIN"):
        return str(Path(env) / tool)
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
    if versions:
        return str(versions[-1] / tool)
    if found := shutil.which(tool):
        return found
    raise StackError(f"postgres: `{tool}` not found; set MENTORNET_PG_BIN to PostgreSQL's bin")


def _pg_user() -> pwd.struct_passwd | None:
    """PostgreSQL refuses to run as root, so as root we run it as `postgres` (or `nobody`)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise StackError("postgres: running as root and neither `postgres` nor `nobody` exists")


def _pg_run(
    cfg: StackConfig, args: list[str], check: bool = True
) -> subprocess.CompletedProcess[str]:
    user = _pg_user()
    prefix = ["runuser", "-u", user.pw_name, "--"] if user else []
    result = subprocess.run(
        [*prefix, *args], capture_output=True, text=True, cwd="/", check=False, timeout=120
    )
    if check and result.returncode != 0:
        raise StackError(
            f"postgres: {' '.join(args)} failed:\n{result.stdout}{result.stderr}"
            f"\n{_tail(cfg.logs_dir / 'postgres.log')}"
        )
    return result


def _pg_prepare(cfg: StackConfig) -> None:
    """Create (once) the data dir, socket dir and log file, owned by the user postgres runs as."""
    user = _pg_user()
    log = cfg.logs_dir / "postgres.log"
    cfg.logs_dir.mkdir(parents=True, exist_ok=True)
    log.touch()
    for path in (cfg.pgdata, cfg.home / "run"):
        path.mkdir(mode=0o700, exist_ok=True)
    if user:
        for path in (cfg.pgdata, cfg.home / "run", log):
            os.chown(path, user.pw_uid, user.pw_gid)
        if _pg_run(cfg, ["test", "-w", str(cfg.pgdata)], check=False).returncode != 0:
            raise StackError(
                f"postgres: user {user.pw_name} cannot reach {cfg.pgdata}; make its parent "
                "folders searchable by others (chmod o+x) or set MENTORNET_HOME elsewhere"
            )
    if not (cfg.pgdata / "PG_VERSION").exists():
        _pg_run(
            cfg,
            [
                _pg_bin("initdb"),
                "-D",
                str(cfg.pgdata),
                *"-U postgres -A trust -E UTF8 --locale=C --no-sync".split(),
            ],
        )


def _pg_running(cfg: StackConfig) -> int | None:
    """The postmaster pid if our data dir has a live server."""
    if _pg_run(cfg, [_pg_bin("pg_ctl"), "status", "-D", str(cfg.pgdata)], check=False).returncode:
        return None
    return int((cfg.pgdata / "postmaster.pid").read_text().split()[0])


async def _pg_provision(cfg: StackConfig) -> None:
    """Wait for `SELECT 1`, then create the mentornet role and database if absent."""
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        try:
            conn = await asyncpg.connect(
                host=str(cfg.home / "run"),
                port=cfg.pg_port,
                user="postgres",
                database="postgres",
                timeout=5,
            )
            break
        except (OSError, asyncpg.PostgresError) as exc:
            if time.monotonic() > deadline:
                raise StackError(
                    f"postgres: not answering: {exc}\n{_tail(cfg.logs_dir / 'postgres.log')}"
                ) from exc
            await asyncio.sleep(0.2)
    try:
        await conn.fetchval("SELECT 1")
        if not await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", DB_USER):
            await conn.execute(f"CREATE ROLE {DB_USER} LOGIN CREATEROLE PASSWORD '{DB_PASSWORD}'")
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DB_NAME):
            await conn.execute(f"CREATE DATABASE {DB_NAME} OWNER {DB_USER}")
    finally:
        await conn.close()


def _pg_tls_options(cfg: StackConfig) -> str:
    """A secured stack (one with a PEM keystore) serves PostgreSQL over TLS too, with the same
    certificate: production refuses a database connection that is not verified TLS."""
    if cfg.ssl_keystore is None:
        return ""
    folder = cfg.home / "pgtls"
    folder.mkdir(mode=0o700, exist_ok=True)
    pem = cfg.ssl_keystore.read_text()
    key_end = pem.index("-----END PRIVATE KEY-----") + len("-----END PRIVATE KEY-----\n")
    (folder / "server.key").write_text(pem[:key_end])
    (folder / "server.pem").write_text(pem[key_end:])
    user = _pg_user()
    for path in (folder, folder / "server.key", folder / "server.pem"):
        path.chmod(0o700 if path.is_dir() else 0o600)
        if user:  # postgres insists on owning its key
            os.chown(path, user.pw_uid, user.pw_gid)
    return (
        f" -c ssl=on -c ssl_cert_file={folder / 'server.pem'}"
        f" -c ssl_key_file={folder / 'server.key'}"
    )


async def _start_postgres(cfg: StackConfig, on_step: Step) -> None:
    pid = await asyncio.to_thread(_pg_running, cfg)
    command = [
        *(_pg_bin("pg_ctl"), "start", "-D", str(cfg.pgdata)),
        *("-l", str(cfg.logs_dir / "postgres.log"), "-w", "-t", str(int(READY_TIMEOUT))),
        "-o",
        f"-p {cfg.pg_port} -k {cfg.home / 'run'} -c listen_addresses=127.0.0.1 "
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
        "-c max_connections=200" + _pg_tls_options(cfg),
    ]
    if pid is None:
        if port_open(cfg.pg_port):
            raise StackError(f"postgres: port {cfg.pg_port} is already in use by another process")
        on_step(f"postgres: starting on 127.0.0.1:{cfg.pg_port}")
        await asyncio.to_thread(_pg_prepare, cfg)
        await asyncio.to_thread(_pg_run, cfg, command)
        pid = await asyncio.to_thread(_pg_running, cfg)
        if pid is None:
            raise StackError(f"postgres: did not start\n{_tail(cfg.logs_dir / 'postgres.log')}")
    _record(
        cfg,
        "postgres",
        pid=pid,
        pgid=os.getpgid(pid),
        port=cfg.pg_port,
        command=command,
        log=str(cfg.logs_dir / "postgres.log"),
    )
    await _pg_provision(cfg)


# ---------------------------------------------------------------- mail catcher and services


def operator_mail_server() -> str | None:
    """The operator's own mail server, when SMTP_HOST or SMTP_PORT is set: the stack then
    leaves both to notifications and starts no mail catcher, so no mail meant for real
    mailboxes is swallowed. None: the stack's catcher receives the mail."""
    host, port = os.environ.get("SMTP_HOST"), os.environ.get("SMTP_PORT")
    if not host and not port:
        return None
    return f"{host or '127.0.0.1'}:{port or 'the default port'}"


def _healthz_check(port: int) -> Callable[[], Awaitable[bool]]:
    return lambda: answers(f"http://127.0.0.1:{port}/healthz")


async def _start_python(cfg: StackConfig, name: str, on_step: Step) -> None:
    """The mail catcher or a service, as `python -m ...` from the repository root."""
    port = cfg.port_of(name)
    log = cfg.logs_dir / f"{name}.log"
    if name == "mailcatcher":
        args = [
            "shared.local.mailcatcher",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--dir",
            str(cfg.mail_dir),
        ]
        env: dict[str, str] = {}
        check = _port_check(port)
    else:
        args = [f"services.{name}"]
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": cfg.bootstrap_servers,
            "DATABASE_URL": cfg.database_url,
            "HTTP_PORT": str(port),
            # local webhook receivers (sinks) listen on 127.0.0.1, which webhooks otherwise refuse
            "WEBHOOK_ALLOWED_HOSTS": os.environ.get("WEBHOOK_ALLOWED_HOSTS", '["127.0.0.1"]'),
        }
        if operator_mail_server() is None:
            env.update(SMTP_HOST="127.0.0.1", SMTP_PORT=str(cfg.smtp_port))
        check = _healthz_check(port)
    on_step(f"{name}: starting on 127.0.0.1:{port}")
    pid = _spawn(
        cfg,
        name,
        [sys.executable, "-m", *args],
        log,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
    )
    await _wait_ready(cfg, name, pid, check, [log], spawned=True)


# ---------------------------------------------------------------- public API


def _entry_running(entry: dict[str, Any]) -> bool:
    return _pid_alive(entry["pid"], entry["command"])


async def start_component(cfg: StackConfig, name: str, on_step: Step | None = None) -> None:
    """Start one component unless it already runs (then only wait until it answers)."""
    say = on_step or _print_step
    cfg.port_of(name)  # rejects unknown names
    cfg.home.mkdir(parents=True, exist_ok=True)
    entry = _load_state(cfg).get(name)
    if name != "postgres" and entry and not _entry_running(entry):
        stop_component(cfg, name, on_step=say)  # stale: reap what is left of its process group
        entry = None
    if name == "postgres":
        await _start_postgres(cfg, say)
    elif entry:
        if name == "kafka":
            check = _kafka_check(cfg)
        elif name in INFRA:
            check = _port_check(cfg.port_of(name))
        else:
            check = _healthz_check(entry["port"])
        await _wait_ready(cfg, name, entry["pid"], check, [Path(entry["log"])], spawned=False)
    elif name == "kafka":
        await _start_kafka(cfg, say)
    else:
        await _start_python(cfg, name, say)


def stop_component(
    cfg: StackConfig, name: str, kill: bool = False, on_step: Step | None = None
) -> bool:
    """Stop one component this stack started; `kill=True` SIGKILLs at once (crash tests).

    Returns whether something was running. Stale entries (dead or reused pids) are dropped.
    """
    say = on_step or _print_step
    entry = _load_state(cfg).pop(name, None)
    _forget(cfg, name)
    if name == "postgres":
        pid = _pg_running(cfg) if cfg.pgdata.exists() else None
        if pid is None:
            return False
        say(f"postgres: {'killing' if kill else 'stopping'} (pid {pid})")
        if kill:  # each backend runs in its own session, so signal them one by one
            children = Path(f"/proc/{pid}/task/{pid}/children")
            pids = [pid, *map(int, children.read_text().split())] if children.exists() else [pid]
            for member in pids:
                _kill_group(member, member, force=True)
        else:
            _pg_run(cfg, [_pg_bin("pg_ctl"), "stop", "-D", str(cfg.pgdata), "-m", "fast", "-w"])
        return True
    if entry is None:
        return False
    pid, pgid = entry["pid"], entry["pgid"]
    if not _entry_running(entry) and (_pid_alive(pid) or not _group_alive(pgid)):
        return False  # gone, or its pid now belongs to another program
    say(f"{name}: {'killing' if kill else 'stopping'} (pid {pid})")
    _kill_group(pid, pgid, force=kill)
    _CHILDREN.pop(pid, None)
    return True


async def _provision(cfg: StackConfig, on_step: Step) -> None:
    """Create the registry's topics and apply every service's migrations."""
    on_step("creating topics")
    await create_topics(cfg.bootstrap_servers)
    on_step("applying migrations")
    await migrate_all(cfg.database_url)


async def _gather(coros: Sequence[Awaitable[None]]) -> None:
    """Run side by side; wait for all (so none is left half-way), then raise the first error."""
    for result in await asyncio.gather(*coros, return_exceptions=True):
        if isinstance(result, BaseException):
            raise result


async def start_infra(
    cfg: StackConfig, provision: bool = True, on_step: Step | None = None
) -> None:
    """Kafka, PostgreSQL and the mail catcher side by side, then the topic and migration hooks."""
    say = on_step or _print_step
    started = time.monotonic()
    names = [n for n in INFRA if n != "mailcatcher" or _with_catcher(cfg)]
    server = operator_mail_server()
    if cfg.with_mailcatcher and server is not None:
        say(f"mail: SMTP_HOST/SMTP_PORT are set, so mail goes to {server}; no mail catcher")
    await _gather([start_component(cfg, n, say) for n in names])
    say(f"infrastructure ready in {time.monotonic() - started:.1f} s")
    if provision:
        await _provision(cfg, say)


async def start_services(
    cfg: StackConfig, names: Sequence[str] = SERVICES, on_step: Step | None = None
) -> None:
    """Start the services side by side and wait until each answers /healthz."""
    await _gather([start_component(cfg, n, on_step) for n in names])


async def up(cfg: StackConfig, services: bool = True, on_step: Step | None = None) -> None:
    """Bring the whole stack up; components already running are left as they are."""
    await start_infra(cfg, on_step=on_step)
    if services:
        await start_services(cfg, on_step=on_step)


def _with_catcher(cfg: StackConfig) -> bool:
    return cfg.with_mailcatcher and operator_mail_server() is None


def down(cfg: StackConfig, on_step: Step | None = None) -> list[str]:
    """Stop everything `up` started (services first, PostgreSQL last); returns what was stopped."""
    order = [*reversed(SERVICES), "mailcatcher", "kafka", "postgres"]
    extra = [n for n in _load_state(cfg) if n not in order]
    return [n for n in [*extra, *order] if stop_component(cfg, n, on_step=on_step)]


def _default_log(cfg: StackConfig, name: str) -> Path:
    return cfg.logs_dir / ("kafka/server.log" if name == "kafka" else f"{name}.log")


def status(cfg: StackConfig) -> list[ComponentStatus]:
    """Every component: whether it runs and answers, its pid, address and main log file."""
    state = _load_state(cfg)
    secured = cfg.sasl_ssl_port is not None
    rows = []
    for name in (*INFRA, *SERVICES):
        entry = state.get(name)
        if name == "mailcatcher" and not _with_catcher(cfg) and entry is None:
            continue
        if name == "postgres":
            running = entry is not None and _pg_running(cfg) is not None
        else:
            running = entry is not None and _entry_running(entry)
        running = running and port_open(cfg.port_of(name))
        rows.append(
            ComponentStatus(
                name=name,
                running=running,
                pid=entry["pid"] if entry and running else None,
                address=f"127.0.0.1:{cfg.port_of(name)}"
                + (f" (SASL_SSL :{cfg.sasl_ssl_port})" if name == "kafka" and secured else ""),
                log=entry["log"] if entry else str(_default_log(cfg, name)),
            )
        )
    return rows
