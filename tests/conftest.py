"""Session fixtures: the real infrastructure every integration and e2e test uses."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
from aiosmtpd.controller import Controller

from shared.local.infra import Endpoints, real_infrastructure
from tests.support import SmtpInbox, free_port


@pytest.fixture(scope="session")
async def infra() -> AsyncIterator[Endpoints]:
    async with real_infrastructure() as endpoints:
        yield endpoints


@pytest.fixture(scope="session")
async def db(infra: Endpoints) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(infra.database_url, min_size=1, max_size=4)
    assert pool is not None
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
def service_env(infra: Endpoints) -> dict[str, str]:
    return {"KAFKA_BOOTSTRAP_SERVERS": infra.bootstrap_servers, "DATABASE_URL": infra.database_url}


@pytest.fixture(scope="module")
def smtp() -> Iterator[tuple[SmtpInbox, int]]:
    """A real SMTP server run by the test, and its port."""
    inbox, port = SmtpInbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


LAYERS = ("unit", "integration", "e2e", "fault")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Fast layers first, and heavy fault suites last so their traffic delays no other test."""

    def layer(item: pytest.Item) -> int:
        return next(
            (i for i, name in enumerate(LAYERS) if item.get_closest_marker(name)), len(LAYERS)
        )

    items.sort(key=layer)
