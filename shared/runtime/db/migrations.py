"""The one migration runner: numbered plain-SQL files per service, applied under an advisory lock.

Files are `NNN_description.sql`. The common files in `shared/runtime/db/migrations/` (inbox and outbox) are
applied to every service schema first; each service's own follow from `services/<name>/migrations/`.
Every file runs in its own transaction with the service schema on the search path.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from shared.runtime.logging import get_logger

COMMON_DIR = Path(__file__).resolve().parent / "migrations"
LOCK_KEY = 0x6D656E746F72  # "mentor": one lock for every runner, so concurrent runs take turns
FILE_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")

log = get_logger(__name__)


@dataclass(frozen=True)
class Migration:
    origin: str  # "common" or the service name
    version: int
    path: Path

    @property
    def id(self) -> str:
        return f"{self.origin}:{self.version:03d}"


def _scan(origin: str, folder: Path) -> list[Migration]:
    found = []
    for path in sorted(folder.glob("*.sql")):
        match = FILE_NAME.match(path.name)
        if not match:
            raise ValueError(f"migration file {path} is not named NNN_description.sql")
        found.append(Migration(origin, int(match.group(1)), path))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ValueError(f"two migrations share a number in {folder}")
    return found


def planned(service: str, folder: Path) -> list[Migration]:
    """The common migrations, then the service's own from `folder`."""
    return _scan("common", COMMON_DIR) + _scan(service, folder)


async def migrate(database_url: str, services: Mapping[str, Path]) -> list[str]:
    """Apply what is missing to each service schema (name -> folder of its own migrations);
    returns the ids applied now. Safe to run from many places at once."""
    applied_now: list[str] = []
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
        for service, folder in services.items():
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{service}"')
            await conn.execute(
                f"""CREATE TABLE IF NOT EXISTS "{service}".schema_migrations (
                    id text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            done = {
                r["id"] for r in await conn.fetch(f'SELECT id FROM "{service}".schema_migrations')
            }
            for migration in planned(service, folder):
                if migration.id in done:
                    continue
                async with conn.transaction():
                    await conn.execute(f'SET LOCAL search_path TO "{service}", public')
                    await conn.execute(migration.path.read_text())
                    await conn.execute(
                        f'INSERT INTO "{service}".schema_migrations (id) VALUES ($1)', migration.id
                    )
                log.info("migration applied", schema=service, migration=migration.id)
                applied_now.append(f"{service}/{migration.id}")
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
        await conn.close()
    return applied_now
