"""Database pools as fixtures, and waiting for what the services write."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

import asyncpg
import pytest

from shared.local.probes import wait_for

Scope = Literal["session", "package", "module", "class", "function"]


def pool_fixture(
    scope: Scope = "session",
    *,
    min_size: int = 1,
    max_size: int = 4,
    search_path: str | None = None,
) -> Callable[[Callable[..., str]], Any]:
    """Turn a function saying where a database is into a fixture of the same name and the same
    parameters (the fixtures it needs) that yields a pool there, closed at the end of `scope`:

        @pool_fixture("module", search_path="notifications")
        def db(infra: Endpoints) -> str:
            return infra.database_url
    """
    settings = {"search_path": search_path} if search_path else None

    def fixture(database_url: Callable[..., str]) -> Any:
        @functools.wraps(database_url)  # pytest reads the wrapped function's parameters
        async def pool(*args: Any, **kwargs: Any) -> AsyncIterator[asyncpg.Pool]:
            created = await asyncpg.create_pool(
                database_url(*args, **kwargs),
                min_size=min_size,
                max_size=max_size,
                server_settings=settings,
            )
            assert created is not None
            try:
                yield created
            finally:
                await created.close()

        return pytest.fixture(scope=scope)(pool)

    return fixture


async def outbox_drained(db: Any, schema: str) -> None:
    """Wait until a service's outbox is empty: everything it committed has been published."""
    await wait_for(db, f"SELECT count(*) = 0 FROM {schema}.outbox")
