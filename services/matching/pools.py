"""Each replica keeps its programs' mentor pools in memory, reloading one only when its version
in the database moved.

Every change to a program's pool moves its version (`repository.pool_versions`): a mentor
joined, left or changed, a rating, a freed place, and proposals too (`insert_proposals` bumps it
in the statement that takes the places). So a replica whose copy is older than another replica's
proposals sees the version moved and reloads before it proposes.

The replica that proposed does not reload: its copy took the places itself (`take_slot`), so it
advances its entry to the version its proposals made (`proposed`), and a large pool is read
again only when someone else changed it. Should a copy still be wrong, the database refuses any
load above capacity (`repository.StalePool`): the batch's transaction rolls back, every copy is
dropped (`forget_all`) and the batch is retried on fresh data.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

import asyncpg

from services.matching import repository as repo
from services.matching.domain.scoring import MentorPool

Key = tuple[str, str]  # (tenant_id, program_id)
Entry = tuple[int, MentorPool]  # the pool version the copy is current at, and the copy


class PoolCache:
    def __init__(self, max_programs: int = 256) -> None:
        self.max_programs = max_programs
        self._pools: dict[Key, Entry] = {}
        self._lent: dict[Key, Entry] = {}  # pools out of the cache while `borrow` blocks run

    async def get(
        self,
        conn: asyncpg.Connection,
        tenant_id: str,
        program_id: str,
        now: datetime,
        version: int | None = None,
    ) -> MentorPool:
        """The program's pool, read under the program lock (the caller holds it); `version`:
        the pool's version, when the caller already read it in this transaction."""
        key = (tenant_id, program_id)
        version, pool = await self._current(conn, key, now, version)
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
        self._lent[key] = await self._current(conn, key, now)
        self._pools.pop(key, None)
        try:
            yield self._lent[key][1]
        finally:
            lent = self._lent.pop(key, None)  # its version moved if this replica proposed
        if lent is not None:
            self._keep(key, *lent)

    def proposed(self, tenant_id: str, program_id: str, version: int) -> None:
        """This replica's proposals moved the program's pool to `version`, and its pool already
        took their places: the copy stays current without a reload. One that was not current
        just before (something else moved the version meanwhile) is dropped instead."""
        key = (tenant_id, program_id)
        for entries in (self._pools, self._lent):
            held = entries.get(key)
            if held is None:
                continue
            if held[0] == version - 1:
                entries[key] = (version, held[1])
            else:
                del entries[key]

    def forget_all(self) -> None:
        """After a failed transaction: what this replica believed may never have been committed.
        (A lent pool is its own transaction's: dropped if that one fails, see `borrow`.)"""
        self._pools.clear()

    async def _current(
        self, conn: asyncpg.Connection, key: Key, now: datetime, version: int | None = None
    ) -> Entry:
        if version is None:
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
