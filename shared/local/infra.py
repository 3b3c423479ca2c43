"""Where the tests find a real Kafka broker and PostgreSQL, in this order:

1. endpoints given by the environment (`KAFKA_BOOTSTRAP_SERVERS` and `DATABASE_URL`);
2. testcontainers, when a Docker engine answers;
3. the project's local stack (`shared.local.stack`), on test ports under `.stack/test`.

Whatever is chosen gets the topics and migrations. Nothing here ever skips: no broker, no run.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from services.registry import migrate_all
from shared.local.stack import REPO_ROOT, StackConfig, down, start_infra, status
from shared.runtime.topic_admin import create_topics


@dataclass(frozen=True)
class Endpoints:
    bootstrap_servers: str
    database_url: str
    origin: str  # "environment", "testcontainers" or "local stack"


def _docker_answers() -> bool:
    try:
        import docker  # testcontainers' dependency

        docker.from_env(timeout=3).ping()
        return True
    except Exception:
        return False


def testing_stack_config(purpose: str = "test") -> StackConfig:
    """A stack of its own for tests (ports 19092/19093/15433) or benchmarks (29092/29093/25433),
    apart from the demo stack's, so `make test`, benchmarks and `make up` never share data."""
    base = {"test": (19092, 19093, 15433), "bench": (29092, 29093, 25433)}[purpose]
    env = f"MENTORNET_{purpose.upper()}_"
    return StackConfig(
        home=REPO_ROOT / ".stack" / purpose,
        kafka_port=int(os.environ.get(f"{env}KAFKA_PORT", base[0])),
        controller_port=int(os.environ.get(f"{env}KAFKA_CONTROLLER_PORT", base[1])),
        pg_port=int(os.environ.get(f"{env}PG_PORT", base[2])),
        with_mailcatcher=False,
    )


@asynccontextmanager
async def real_infrastructure(purpose: str = "test") -> AsyncIterator[Endpoints]:
    env_kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    env_db = os.environ.get("DATABASE_URL")
    if env_kafka and env_db:
        endpoints = Endpoints(env_kafka, env_db, "environment")
        await _provision(endpoints)
        yield endpoints
    elif _docker_answers():
        async with _containers() as endpoints:
            yield endpoints
    else:
        cfg = testing_stack_config(purpose)
        already_running = all(c.running for c in status(cfg) if c.name in ("kafka", "postgres"))
        await start_infra(cfg, provision=False)
        endpoints = Endpoints(cfg.bootstrap_servers, cfg.database_url, "local stack")
        try:
            await _provision(endpoints)
            yield endpoints
        finally:
            if not already_running and not os.environ.get("MENTORNET_TEST_KEEP_STACK"):
                down(cfg)  # only what this run started


async def _provision(endpoints: Endpoints) -> None:
    await create_topics(endpoints.bootstrap_servers)
    await migrate_all(endpoints.database_url)


@asynccontextmanager
async def _containers() -> AsyncIterator[Endpoints]:
    from testcontainers.kafka import KafkaContainer
    from testcontainers.postgres import PostgresContainer

    with (
        KafkaContainer("apache/kafka:4.1.1").with_kraft() as kafka,
        PostgresContainer(
            "postgres:15", username="mentornet", password="mentornet", dbname="mentornet"
        ) as pg,
    ):
        url = pg.get_connection_url().replace("postgresql+psycopg2://", "postgresql://")
        endpoints = Endpoints(kafka.get_bootstrap_server(), url, "testcontainers")
        await _provision(endpoints)
        yield endpoints
