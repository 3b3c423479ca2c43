"""Housekeeping: rows kept only to recognise replays are purged once no replay can come.

An event can only come back while its topic still holds it, so the inbox (and notifications'
finished deliveries) need to outlive the topics' retention (30 days by default), not forever.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg


@dataclass(frozen=True)
class Purge:
    """Rows of `table` whose `column` is older than the cutoff and that match `where`."""

    table: str
    column: str
    where: str = "TRUE"

    async def run(self, pool: asyncpg.Pool, before: datetime, batch: int = 10_000) -> int:
        """Delete in batches (short transactions, no long lock); returns how many rows went."""
        total = 0
        while True:
            status = await pool.execute(
                f"""DELETE FROM {self.table} WHERE ctid IN (
                        SELECT ctid FROM {self.table}
                        WHERE {self.column} < $1 AND ({self.where}) LIMIT $2)""",
                before,
                batch,
            )
            deleted = int(status.split()[-1])
            total += deleted
            if deleted < batch:
                return total


INBOX = Purge("inbox", "handled_at")
