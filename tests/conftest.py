"""Session fixtures: the real infrastructure every integration and e2e test uses."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from shared.local.infra import Endpoints, real_infrastructure
from shared.local.sinks import SmtpSink
from tests.support import pool_fixture


@pytest.fixture(scope="session")
async def infra() -> AsyncIterator[Endpoints]:
    async with real_infrastructure() as endpoints:
        yield endpoints


@pool_fixture("session")
def db(infra: Endpoints) -> str:
    return infra.database_url


@pytest.fixture(scope="session")
def service_env(infra: Endpoints) -> dict[str, str]:
    return {"KAFKA_BOOTSTRAP_SERVERS": infra.bootstrap_servers, "DATABASE_URL": infra.database_url}


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpSink]:
    """A real SMTP server run by the test (each module its own), keeping what it accepts."""
    sink = SmtpSink().start()
    yield sink
    sink.stop()


# `deploy` last: on a fresh machine it first downloads its tools (minutes), and it needs
# nothing the other layers start, so every other result arrives before it.
LAYERS = ("unit", "integration", "e2e", "fault", "deploy")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Fast layers first, heavy fault suites late so their traffic delays no other test, and
    `deploy` (it may download tools) last."""

    def layer(item: pytest.Item) -> int:
        return next(
            (i for i, name in enumerate(LAYERS) if item.get_closest_marker(name)), len(LAYERS)
        )

    items.sort(key=layer)
