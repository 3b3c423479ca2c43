"""Each replica keeps its programs' mentor pools in memory, reloading one only when its version
in the database moved (a mentor joined, left or changed, a rating, a freed slot).

Proposals this replica makes update its copy directly. A copy can only be stale towards "fuller
than really", never the other way round for long: the database refuses any load above capacity
(`StalePool`), and then every copy is dropped and the batch retried on fresh data.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

from services.matching import repository as repo
from services.matching.domain.scoring import MentorPool


class PoolCache:
    def __init__(self, max_programs: int = 256) -> None:
        self.max_programs = max_programs
        self._pools: dict[tuple[str, str], tuple[int, MentorPool]] = {}

    async def get(
        self, conn: asyncpg.Connection, tenant_id: str, program_id: str, now: datetime
    ) -> MentorPool:
        """The program's pool, read under the program lock (the caller holds it)."""
        key = (tenant_id, program_id)
        version = await repo.pool_version(conn, tenant_id, program_id)
        cached = self._pools.get(key)
        if cached is not None and cached[0] == version:
            return cached[1]
        pool = MentorPool(await repo.load_mentors(conn, tenant_id, program_id), now)
        if len(self._pools) >= self.max_programs:
            self._pools.pop(next(iter(self._pools)))  # the oldest entry: a simple bound on memory
        self._pools[key] = (version, pool)
        return pool

    def forget_all(self) -> None:
        """After a failed transaction: what this replica believed may never have been committed."""
        self._pools.clear()
