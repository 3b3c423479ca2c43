"""Create and describe the topics of the registry on a live cluster (`mentornet topics ...`)."""

from __future__ import annotations

from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from shared.contract.topics import TOPICS
from shared.runtime.kafka import client_options
from shared.runtime.settings import KafkaSettings


def _admin(
    bootstrap_servers: str | None, kafka: KafkaSettings | None = None
) -> AIOKafkaAdminClient:
    """An admin client: `kafka` settings when given (any listener, e.g. SASL_SSL), else those of
    the environment, optionally pointed at other `bootstrap_servers`."""
    kafka = kafka or KafkaSettings()
    if bootstrap_servers:
        kafka = kafka.model_copy(update={"bootstrap_servers": bootstrap_servers})
    return AIOKafkaAdminClient(**client_options(kafka), client_id="mentornet-admin")


async def create_topics(
    bootstrap_servers: str | None = None, replication: int = 1, kafka: KafkaSettings | None = None
) -> list[str]:
    """Create every missing topic of the registry; returns the names created now."""
    admin = _admin(bootstrap_servers, kafka)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in TOPICS.values() if t.name not in existing]
        created = []
        for topic in missing:
            try:
                await admin.create_topics(
                    [
                        NewTopic(
                            topic.name,
                            topic.partitions,
                            replication,
                            topic_configs=topic.kafka_config(),
                        )
                    ]
                )
                created.append(topic.name)
            except TopicAlreadyExistsError:  # another provisioner won the race
                pass
        return created
    finally:
        await admin.close()


async def describe_topics(bootstrap_servers: str | None = None) -> list[dict[str, Any]]:
    """What the cluster has for each registry topic: partitions, or missing."""
    admin = _admin(bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        names = [n for n in TOPICS if n in existing]
        described = {d["topic"]: d for d in await admin.describe_topics(names)} if names else {}
        return [
            {
                "topic": name,
                "exists": name in described,
                "partitions": len(described[name]["partitions"]) if name in described else 0,
                "expected_partitions": spec.partitions,
                "key": spec.key,
                "cleanup_policy": spec.cleanup_policy,
            }
            for name, spec in TOPICS.items()
        ]
    finally:
        await admin.close()
