"""One login role per service: each reads and writes its own schema and nothing else, owns nothing,
and the three services run end to end with only those grants.

The test stack's PostgreSQL trusts every local connection (`initdb -A trust`), so passwords are not
checked here: the point is what each role may and may not do once connected.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from services.registry import NAMES as SERVICES
from shared.local.infra import Endpoints
from shared.local.sinks import SmtpSink
from shared.ops.roles import create_service_roles, role_database_url, role_name
from tests.support import (
    ServiceProcess,
    Services,
    TopicReader,
    cloud_event,
    fresh_group,
    of_tenant,
    publish_raw,
    unique,
    wait_for,
)

pytestmark = pytest.mark.integration

Passwords = dict[str, str]


@pytest.fixture(scope="module")
async def passwords(infra: Endpoints) -> Passwords:
    generated = {service: secrets.token_urlsafe(24) for service in SERVICES}
    first = await create_service_roles(infra.database_url, generated)
    assert sorted(first.created + first.updated) == sorted(role_name(s) for s in SERVICES)
    again = await create_service_roles(infra.database_url, generated)  # idempotent
    assert again.created == [] and sorted(again.updated) == sorted(role_name(s) for s in SERVICES)
    return generated


async def _connect(infra: Endpoints, passwords: Passwords, service: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(role_database_url(infra.database_url, service, passwords[service]))
    assert await conn.fetchval("SELECT current_user") == role_name(service)
    return conn


async def _tables(db: asyncpg.Pool, schema: str) -> list[str]:
    rows = await db.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = $1 ORDER BY tablename", schema
    )
    return [r["tablename"] for r in rows]


async def test_a_role_cannot_read_another_services_schema(
    infra: Endpoints, db: asyncpg.Pool, passwords: Passwords
) -> None:
    conn = await _connect(infra, passwords, "matching")
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
            await conn.fetch("SELECT * FROM profiles.enrolments LIMIT 1")
    finally:
        await conn.close()
    # and every other pair: no table of another schema can be read or written
    for service in SERVICES:
        conn = await _connect(infra, passwords, service)
        try:
            for other in (s for s in SERVICES if s != service):
                for table in await _tables(db, other):
                    for sql in (
                        f"SELECT 1 FROM {other}.{table} LIMIT 1",
                        f"DELETE FROM {other}.{table} WHERE false",
                    ):
                        with pytest.raises(asyncpg.InsufficientPrivilegeError):
                            await conn.execute(sql)
        finally:
            await conn.close()


@pytest.mark.parametrize("service", SERVICES)
async def test_a_role_can_neither_alter_nor_drop_nor_create(
    infra: Endpoints, db: asyncpg.Pool, passwords: Passwords, service: str
) -> None:
    own = f"{service}.inbox"
    other = f"{next(s for s in SERVICES if s != service)}.inbox"
    conn = await _connect(infra, passwords, service)
    try:
        for sql, error in (
            (f"ALTER TABLE {own} ADD COLUMN intruder int", "must be owner"),
            (f"DROP TABLE {own}", "must be owner"),
            (f"TRUNCATE {own}", "permission denied"),
            (f"CREATE INDEX intruder ON {own} (event_id)", "must be owner"),
            (f"ALTER TABLE {other} ADD COLUMN intruder int", "permission denied"),
            (f"DROP TABLE {other}", "permission denied"),
            (f"CREATE TABLE {service}.intruder (id int)", "permission denied"),
            ("CREATE TABLE public.intruder (id int)", "permission denied"),
            (f"INSERT INTO {service}.schema_migrations (id) VALUES ('fake:999')", "permission"),
        ):
            # in a transaction that never commits, in case one of them were allowed after all
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match=error):
                async with conn.transaction():
                    await conn.execute(sql)
    finally:
        await conn.close()
    # it owns nothing and has no power beyond logging in
    role = await db.fetchrow(
        """SELECT rolcanlogin, rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls,
                  (SELECT count(*) FROM pg_shdepend d WHERE d.refobjid = r.oid AND d.deptype = 'o')
                  AS owned,
                  (SELECT count(*) FROM pg_auth_members m WHERE m.member = r.oid) AS memberships
           FROM pg_roles r WHERE rolname = $1""",
        role_name(service),
    )
    assert dict(role) == {
        "rolcanlogin": True,
        "rolsuper": False,
        "rolcreaterole": False,
        "rolcreatedb": False,
        "rolreplication": False,
        "rolbypassrls": False,
        "owned": 0,
        "memberships": 0,
    }


@pytest.mark.parametrize("service", SERVICES)
async def test_a_role_does_its_own_work(
    infra: Endpoints, db: asyncpg.Pool, passwords: Passwords, service: str
) -> None:
    tenant = unique("roles")
    conn = await _connect(infra, passwords, service)
    try:
        await conn.execute(f"SET search_path TO {service}, public")  # as the services' pools do
        for table in await _tables(db, service):  # every table of its schema can be read
            await conn.fetch(f"SELECT * FROM {table} LIMIT 1")
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") > 0
        tx = conn.transaction()  # rolled back: nothing of this stays in the shared database
        await tx.start()
        try:
            await conn.execute(
                "INSERT INTO inbox (tenant_id, source, event_id) VALUES ($1, 'test', 'e-1')",
                tenant,
            )
            assert await conn.fetchval(
                "UPDATE inbox SET handled_at = now() WHERE tenant_id = $1 RETURNING 1", tenant
            )
            assert await conn.fetchval("DELETE FROM inbox WHERE tenant_id = $1 RETURNING 1", tenant)
            # the outbox id comes from a sequence
            outbox_id = await conn.fetchval(
                "INSERT INTO outbox (topic, key, value, headers) VALUES ('t', NULL, '', '[]') "
                "RETURNING id"
            )
            assert await conn.fetchval(
                "SELECT 1 FROM outbox WHERE id = $1 FOR UPDATE SKIP LOCKED", outbox_id
            )
            await conn.execute(
                """INSERT INTO consumed_offsets (cluster, topic, partition, "offset") VALUES ('c', $1, 0, 1)
                   ON CONFLICT (cluster, topic, partition) DO UPDATE SET "offset" = EXCLUDED."offset" """,
                f"t-{tenant}",
            )
            if service == "matching":
                await conn.execute(
                    "INSERT INTO programs (tenant_id, program_id, config, updated_at) "
                    "VALUES ($1, 'p', '{}', now())",
                    tenant,
                )
                assert await conn.fetchval(
                    "SELECT count(*) FROM matching.programs WHERE tenant_id = $1", tenant
                )
            # advisory locks and NOTIFY need no grant
            assert await conn.fetchval("SELECT pg_try_advisory_xact_lock(1)") is True
            await conn.execute(f"NOTIFY {service}_roles_test")
        finally:
            await tx.rollback()
        heard: asyncio.Queue[str] = asyncio.Queue()
        await conn.add_listener(f"{service}_roles_test", lambda *args: heard.put_nowait(args[3]))
        await conn.execute(f"NOTIFY {service}_roles_test, 'hello'")
        assert await asyncio.wait_for(heard.get(), timeout=5) == "hello"
    finally:
        await conn.close()


async def test_a_later_migration_is_granted_to_its_service_only(
    infra: Endpoints, db: asyncpg.Pool, passwords: Passwords
) -> None:
    """Tables the owner adds after the roles were made (the next migration) are usable at once."""
    table = f"profiles.later_{secrets.token_hex(4)}"
    await db.execute(f"CREATE TABLE {table} (id bigserial PRIMARY KEY, note text)")
    try:
        profiles = await _connect(infra, passwords, "profiles")
        matching = await _connect(infra, passwords, "matching")
        try:
            assert await profiles.fetchval(f"INSERT INTO {table} (note) VALUES ('x') RETURNING id")
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await matching.fetch(f"SELECT * FROM {table}")
        finally:
            await profiles.close()
            await matching.close()
    finally:
        await db.execute(f"DROP TABLE {table}")


# ---------------------------------------------------------------- the services, each as its role


TENANT = unique("roles-e2e")


@pytest.fixture(scope="module")
async def services_as_roles(
    infra: Endpoints, passwords: Passwords, smtp: SmtpSink
) -> AsyncIterator[dict[str, ServiceProcess]]:
    """The three services, each connected as its own role, in consumer groups of their own."""
    services = Services()
    for service in SERVICES:
        group = await fresh_group(infra.bootstrap_servers, service, f"{service}-roles")
        services.add(
            service,
            service,
            {
                "KAFKA_BOOTSTRAP_SERVERS": infra.bootstrap_servers,
                "DATABASE_URL": role_database_url(infra.database_url, service, passwords[service]),
                "CONSUMER_GROUP": group,
                **smtp.env(),
                "DELIVERY_TENANTS": json.dumps([TENANT]),
            },
        )
    async with services as procs:
        await asyncio.gather(*(p.wait_assigned() for p in procs.values()))
        yield procs


def registration(kind: str, person: str, **data: Any) -> tuple[str, bytes, bytes]:
    body = {
        "person_id": person,
        "program_id": "roles-2026",
        "display_name": f"Person {person}",
        "email": f"{person}@{TENANT}.example",
        "languages": ["en"],
        "timezone": "Europe/Dublin",
        **data,
    }
    event = cloud_event(f"{kind}-registered", TENANT, body)
    return f"{kind}-registered", person.encode(), json.dumps(event).encode()


async def test_the_services_run_end_to_end_with_only_their_grants(
    infra: Endpoints,
    db: asyncpg.Pool,
    smtp: SmtpSink,
    services_as_roles: dict[str, ServiceProcess],
) -> None:
    async with TopicReader(infra.bootstrap_servers, "match-proposed") as reader:
        await publish_raw(
            infra.bootstrap_servers,
            [
                registration(
                    "mentor", "m-1", expertise=[{"topic": "negotiation", "level": 4}], capacity=1
                ),
                registration("mentee", "e-1", goals=[{"topic": "negotiation", "priority": 1}]),
            ],
        )
        await reader.collect(lambda rs: len(rs) >= 1, keep=of_tenant(TENANT), timeout=60)
    # profiles stored both, matching proposed, notifications mailed both people
    assert (
        await db.fetchval("SELECT count(*) FROM profiles.enrolments WHERE tenant_id = $1", TENANT)
        == 2
    )
    assert (
        await db.fetchval(
            "SELECT count(*) FROM matching.matches WHERE tenant_id = $1 AND status = 'proposed'",
            TENANT,
        )
        == 1
    )
    await wait_for(
        db,
        "SELECT count(*) = 2 FROM notifications.deliveries WHERE tenant_id = $1 AND state = 'sent'",
        TENANT,
        timeout=60,
    )
    recipients = [
        address for m in list(smtp.mails) for address in re.findall(r"<([^>]+)>", m.parsed()["To"])
    ]
    assert sorted(recipients) == sorted(f"{p}@{TENANT}.example" for p in ("e-1", "m-1"))
    # each service's connections were made as its own role
    for service, proc in services_as_roles.items():
        users = await db.fetch(
            "SELECT DISTINCT usename FROM pg_stat_activity WHERE application_name = $1",
            f"mentornet-{service}",
        )
        assert role_name(service) in {u["usename"] for u in users}
        assert "permission denied" not in (proc.log.read_text() if proc.log else ""), proc.tail()
