"""The one list of mentornet's services, for the tools that run, provision or document them all
(the CLI, migrations, schema export, dead-letter commands, the local stack and the tests).

What each service reads and publishes is the contract's topic registry (`ServiceSpec.reads`).
"""

from __future__ import annotations

from pathlib import Path

from services.matching.entrypoint import SERVICE as MATCHING
from services.notifications.entrypoint import SERVICE as NOTIFICATIONS
from services.profiles.entrypoint import SERVICE as PROFILES
from shared.runtime.db.migrations import migrate
from shared.runtime.service import ServiceSpec

SERVICES: dict[str, ServiceSpec] = {s.name: s for s in (PROFILES, MATCHING, NOTIFICATIONS)}
NAMES: tuple[str, ...] = tuple(SERVICES)


def migration_folders(names: tuple[str, ...] = NAMES) -> dict[str, Path]:
    """Each service schema and the folder of its own migrations."""
    return {name: SERVICES[name].migrations for name in names}


async def migrate_all(database_url: str) -> list[str]:
    """Apply every service's missing migrations; returns the ids applied now."""
    return await migrate(database_url, migration_folders())
