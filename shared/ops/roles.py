"""One PostgreSQL login role per service, with only the grants it needs.

`mentornet_<service>` may read and write the tables of its own schema and use its sequences,
nothing else: no other schema, no CREATE anywhere, and it owns nothing, so it can neither ALTER nor
DROP a table. Migrations keep running as the owner of the schemas (the user that created them);
default privileges grant the service role the tables and sequences later migrations add.

What needs no grant: LISTEN/NOTIFY (the outbox wake-up) and the advisory lock functions
(`pg_advisory_*`), which PUBLIC may execute.

Passwords are sent as SCRAM-SHA-256 verifiers computed here, so the plain password never reaches
the server (nor its statement log). Running it again updates the passwords and repairs the grants.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

from services.registry import NAMES as SERVICES
from shared.runtime.db.migrations import LOCK_KEY
from shared.runtime.logging import get_logger

log = get_logger(__name__)

TABLE_PRIVILEGES = "SELECT, INSERT, UPDATE, DELETE"
SEQUENCE_PRIVILEGES = "USAGE, SELECT"
READ_ONLY_TABLES = ("schema_migrations",)  # the runner's bookkeeping: services may only read it
SCRAM_ITERATIONS = 4096  # PostgreSQL's own default (scram_iterations)


class RoleError(RuntimeError):
    """A service role cannot be made safe; the message says what to fix."""


def role_name(service: str) -> str:
    return f"mentornet_{service}"


def password_variable(service: str) -> str:
    return f"{service.upper()}_DB_PASSWORD"


def load_passwords(
    services: Sequence[str] | None = None,
    source: Path | None = None,
    environ: Mapping[str, str] = os.environ,
) -> dict[str, str]:
    """Each service's database password, from `source` or else the environment.

    `source` is a folder with one file per service (a mounted Kubernetes secret: `profiles`,
    `matching`, ...) or a file of `service=password` lines; without it, `<SERVICE>_DB_PASSWORD`.
    Every service asked for (default: all) must have one.
    """
    wanted = list(services or SERVICES)
    unknown = sorted(set(wanted) - set(SERVICES))
    if unknown:
        raise ValueError(f"unknown service(s) {unknown}; expected some of {list(SERVICES)}")
    found: dict[str, str] = {}
    if source is not None and source.is_dir():
        for service in wanted:
            if (source / service).is_file():
                found[service] = (source / service).read_text().rstrip("\r\n")
    elif source is not None:
        for number, line in enumerate(source.read_text().splitlines(), 1):
            if line.strip() and not line.lstrip().startswith("#"):
                service, sep, password = line.partition("=")
                if not sep:
                    raise ValueError(f"{source}:{number}: expected `service=password`")
                found[service.strip()] = password.strip()
    else:
        found = {
            s: environ[password_variable(s)] for s in wanted if environ.get(password_variable(s))
        }
    missing = [s for s in wanted if not found.get(s)]
    if missing:
        where = str(source) if source else ", ".join(password_variable(s) for s in missing)
        raise ValueError(f"no database password for {', '.join(missing)} (looked in {where})")
    return {s: found[s] for s in wanted}


def scram_verifier(
    password: str, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS
) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for `password` (RFC 5802 / RFC 7677)."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    b64 = base64.b64encode
    return (
        f"SCRAM-SHA-256${iterations}:{b64(salt).decode()}"
        f"${b64(stored_key).decode()}:{b64(server_key).decode()}"
    )


def role_database_url(database_url: str, service: str, password: str) -> str:
    """`database_url` with the service role and its password as the credentials."""
    parts = urlsplit(database_url)
    host = parts.netloc.rpartition("@")[2]
    userinfo = f"{quote(role_name(service), safe='')}:{quote(password, safe='')}"
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{host}"))


@dataclass(frozen=True)
class RolesReport:
    """What `create_service_roles` did."""

    created: list[str]
    updated: list[str]
    public_schema_locked: bool  # CREATE on schema public revoked from PUBLIC (or already was)


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def create_service_roles(database_url: str, passwords: Mapping[str, str]) -> RolesReport:
    """Create (or update) `mentornet_<service>` for each service in `passwords`.

    Connect as the owner of the service schemas (the user migrations run as); it needs CREATEROLE.
    Run the migrations first: the schemas must exist. Safe to run again, and concurrently.
    """
    unknown = sorted(set(passwords) - set(SERVICES))
    if unknown:
        raise ValueError(f"unknown service(s) {unknown}; expected some of {list(SERVICES)}")
    for service, password in passwords.items():
        if len(password) < 16:
            raise ValueError(f"{service}: the database password must have 16 characters or more")
        if not (password.isascii() and password.isprintable()):
            # clients SASLprep-normalise non-ASCII passwords; this verifier would not match
            raise ValueError(f"{service}: the database password must be printable ASCII")
    conn = await asyncpg.connect(database_url)
    created: list[str] = []
    updated: list[str] = []
    try:
        async with conn.transaction():
            # the migration runner's lock: no schema changes under our feet, one run at a time
            await conn.execute("SELECT pg_advisory_xact_lock($1)", LOCK_KEY)
            database = await conn.fetchval("SELECT current_database()")
            for service, password in passwords.items():
                role = role_name(service)
                existed = await _ensure_role(conn, role, password)
                (updated if existed else created).append(role)
                await _grant(conn, service, role, database)
                log.info("service role ready", role=role, schema=service, created=not existed)
            public_locked = await _lock_public_schema(conn)
    finally:
        await conn.close()
    return RolesReport(created, updated, public_locked)


async def _ensure_role(conn: asyncpg.Connection, role: str, password: str) -> bool:
    """Create the login role, or set its password; refuse a role with powers it must not have."""
    verifier = scram_verifier(password)
    row = await conn.fetchrow(
        """SELECT rolsuper OR rolcreaterole OR rolcreatedb OR rolreplication OR rolbypassrls
                  AS powerful
           FROM pg_roles WHERE rolname = $1""",
        role,
    )
    if row is None:
        await conn.execute(
            f"CREATE ROLE {_ident(role)} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE "
            f"NOREPLICATION NOBYPASSRLS INHERIT PASSWORD '{verifier}'"
        )
        return False
    if row["powerful"]:
        raise RoleError(
            f"role {role} exists with SUPERUSER, CREATEROLE, CREATEDB, REPLICATION or BYPASSRLS; "
            "a service role must have none of them: ALTER ROLE it (as a superuser) or drop it"
        )
    memberships = await conn.fetch(
        """SELECT g.rolname FROM pg_auth_members m
           JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles r ON r.oid = m.member
           WHERE r.rolname = $1""",
        role,
    )
    if memberships:
        granted = ", ".join(r["rolname"] for r in memberships)
        raise RoleError(
            f"role {role} is a member of {granted} and would inherit its privileges; "
            f"REVOKE {granted} FROM {role} first"
        )
    await conn.execute(f"ALTER ROLE {_ident(role)} LOGIN PASSWORD '{verifier}'")
    return True


async def _grant(conn: asyncpg.Connection, service: str, role: str, database: str) -> None:
    owned = await conn.fetchval(
        """SELECT count(*) FROM pg_shdepend d JOIN pg_roles r ON r.oid = d.refobjid
           WHERE r.rolname = $1 AND d.deptype = 'o'
             AND d.dbid IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))""",
        role,
    )
    if owned:
        raise RoleError(
            f"role {role} owns {owned} object(s), so it could ALTER or DROP them; "
            f"REASSIGN OWNED BY {role} TO <the migrating user> first"
        )
    owner = await conn.fetchval(
        "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = $1", service
    )
    if owner is None:
        raise RoleError(f"schema {service} does not exist; run `mentornet migrate` first")
    r, s, o = _ident(role), _ident(service), _ident(owner)
    if not await conn.fetchval("SELECT has_database_privilege('public', $1, 'CONNECT')", database):
        await conn.execute(f"GRANT CONNECT ON DATABASE {_ident(database)} TO {r}")
    for other in SERVICES:  # nothing on the other schemas, whatever was granted before
        if other != service and await conn.fetchval(
            "SELECT 1 FROM pg_namespace WHERE nspname = $1", other
        ):
            await conn.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA {_ident(other)} FROM {r}")
            await conn.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {_ident(other)} FROM {r}")
            await conn.execute(f"REVOKE ALL ON SCHEMA {_ident(other)} FROM {r}")
    await conn.execute(f"REVOKE CREATE ON SCHEMA {s} FROM {r}")
    await conn.execute(f"GRANT USAGE ON SCHEMA {s} TO {r}")
    # ALL TABLES includes views; TRUNCATE, REFERENCES and TRIGGER are never granted
    await conn.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA {s} FROM {r}")
    await conn.execute(f"GRANT {TABLE_PRIVILEGES} ON ALL TABLES IN SCHEMA {s} TO {r}")
    await conn.execute(f"GRANT {SEQUENCE_PRIVILEGES} ON ALL SEQUENCES IN SCHEMA {s} TO {r}")
    for table in READ_ONLY_TABLES:
        if await conn.fetchval("SELECT to_regclass($1)", f"{s}.{_ident(table)}"):
            await conn.execute(f"REVOKE ALL ON {s}.{_ident(table)} FROM {r}")
            await conn.execute(f"GRANT SELECT ON {s}.{_ident(table)} TO {r}")
    # tables and sequences created later by the owner (the next migrations) are granted too
    await conn.execute(
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {o} IN SCHEMA {s} "
        f"GRANT {TABLE_PRIVILEGES} ON TABLES TO {r}"
    )
    await conn.execute(
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {o} IN SCHEMA {s} "
        f"GRANT {SEQUENCE_PRIVILEGES} ON SEQUENCES TO {r}"
    )


async def _lock_public_schema(conn: asyncpg.Connection) -> bool:
    """REVOKE CREATE ON SCHEMA public FROM PUBLIC when we may (the default since PostgreSQL 15).

    Returns whether PUBLIC is now without CREATE there; False means a superuser should do it."""
    row = await conn.fetchrow(
        """SELECT pg_has_role(current_user, nspowner, 'USAGE') AS mine,
                  has_schema_privilege('public', 'public', 'CREATE') AS open
           FROM pg_namespace WHERE nspname = 'public'"""
    )
    if row is None or not row["open"]:
        return True
    if not row["mine"]:
        log.warning("schema public lets every role create objects; revoke it as a superuser")
        return False
    await conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    return True
