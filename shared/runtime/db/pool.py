"""Connection pools with each service's schema on the search path."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _reset_connection(conn: asyncpg.Connection) -> None:
    """On release. Pool connections keep no session state (locks are per transaction, LISTEN
    has connections of its own), so asyncpg's full reset, a round trip per unit of work, is
    skipped; only a connection left inside a transaction is rolled back."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


async def create_pool(
    dsn: str, schema: str, *, min_size: int = 1, max_size: int = 5
) -> asyncpg.Pool:
    """A pool whose connections see `schema` first, so SQL names stay unqualified."""
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        reset=_reset_connection,
        server_settings={
            "search_path": f"{schema},public",
            "application_name": f"mentornet-{schema}",
        },
        command_timeout=30,
    )
    assert pool is not None
    return pool


@asynccontextmanager
async def transaction(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """One unit of work: commits when the block ends, rolls back when it raises."""
    async with pool.acquire() as conn, conn.transaction():
        yield conn
