"""Each replica keeps its programs' mentor pools in memory, reloading one only when its version
in the database moved (a mentor joined, left or changed, a rating, a freed slot).

Proposals this replica makes update its copy directly; proposals another replica makes do not
move the version, so a copy can believe a mentor has a place that is already taken. The database
refuses any load above capacity (`repository.StalePool`): the batch's transaction then rolls
back, every copy is dropped (`forget_all`) and the batch is retried on fresh data.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

import asyncpg

from services.matching import repository as repo
from services.matching.domain.scoring import MentorPool

Key = tuple[str, str]  # (tenant_id, program_id)


class PoolCache:
    def __init__(self, max_programs: int = 256) -> None:
        self.max_programs = max_programs
        self._pools: dict[Key, tuple[int, MentorPool]] = {}

    async def get(
        self, conn: asyncpg.Connection, tenant_id: str, program_id: str, now: datetime
    ) -> MentorPool:
        """The program's pool, read under the program lock (the caller holds it)."""
        key = (tenant_id, program_id)
        version, pool = await self._current(conn, key, now)
        self._keep(key, version, pool)
        return pool

    @asynccontextmanager
    async def borrow(
        self, conn: asyncpg.Connection, tenant_id: str, program_id: str, now: datetime
    ) -> AsyncIterator[MentorPool]:
        """The program's pool, out of the cache while the block runs, back in when it ends
        without an error (under the program lock, like `get`).

        For work on the pool in another thread: no task of the event loop can be handed the
        same pool meanwhile, even one that would not wait for the program lock. If the block
        fails, the pool (perhaps half updated, perhaps still in use by the thread) is dropped.
        """
        key = (tenant_id, program_id)
        version, pool = await self._current(conn, key, now)
        self._pools.pop(key, None)
        yield pool
        self._keep(key, version, pool)

    def forget_all(self) -> None:
        """After a failed transaction: what this replica believed may never have been committed."""
        self._pools.clear()

    async def _current(
        self, conn: asyncpg.Connection, key: Key, now: datetime
    ) -> tuple[int, MentorPool]:
        version = await repo.pool_version(conn, *key)
        cached = self._pools.get(key)
        if cached is not None and cached[0] == version:
            return cached
        return version, MentorPool(await repo.load_mentors(conn, *key), now)

    def _keep(self, key: Key, version: int, pool: MentorPool) -> None:
        self._pools.pop(key, None)  # kept last: entries stay in the order they were last used
        if len(self._pools) >= self.max_programs:
            self._pools.pop(next(iter(self._pools)))  # the least recently used: bounds memory
        self._pools[key] = (version, pool)
