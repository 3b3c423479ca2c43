"""Plain Kafka clients for tests and benchmarks: no project code between them and the broker.

Publish raw records as an HR system would, read topics from their current end, list every
partition of a topic, and make consumer groups that start exactly at the topics' ends.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from aiokafka.partitioner import murmur2

from shared.contract.topics import TOPICS, read_by
from shared.local.probes import NotReady, wait_until

RawRecord = tuple[str, bytes | None, bytes | None]  # topic, key, value


def unique(prefix: str) -> str:
    """A fresh name (tenant, consumer group), so runs share one broker and one database without
    stepping on each other."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def publish_raw(
    bootstrap: str,
    records: Iterable[RawRecord],
    headers: list[tuple[str, bytes]] | None = None,
) -> None:
    """Publish raw bytes through a plain producer: no project code on the way in."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(t, v, key=k, headers=headers) for t, k, v in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def topic_partitions(bootstrap: str, topics: Iterable[str]) -> list[TopicPartition]:
    """Every partition of `topics`, from the admin client: a fresh consumer's metadata can be
    partial, and a reader pinned on part of a topic silently misses the rest."""
    wanted = list(topics)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(wanted)
    finally:
        await admin.close()
    partitions = [
        TopicPartition(d["topic"], p["partition"]) for d in described for p in d["partitions"]
    ]
    assert {tp.topic for tp in partitions} == set(wanted), f"topics missing: {wanted}"
    return partitions


async def end_offsets(bootstrap: str, topics: Iterable[str]) -> dict[TopicPartition, int]:
    """Where each partition of `topics` ends now (readers start there to see only what follows)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    await asyncio.sleep(0)  # aiokafka: let its coordinator task start, or stop() raises
    try:
        return dict(await consumer.end_offsets(await topic_partitions(bootstrap, topics)))
    finally:
        await consumer.stop()


class TopicReader:
    """Reads topics from their current end: only what is published after it was opened."""

    def __init__(self, bootstrap: str, *topics: str) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        self.consumer: AIOKafkaConsumer | None = None

    async def __aenter__(self) -> TopicReader:
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False
        )
        await self.consumer.start()
        partitions = await topic_partitions(self.bootstrap, self.topics)
        self.consumer.assign(partitions)
        await self.consumer.seek_to_end(*partitions)
        for tp in partitions:  # resolve the end offsets now, not lazily at the first fetch
            await self.consumer.position(tp)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.consumer:
            await self.consumer.stop()

    async def drain(
        self, seconds: float, keep: Callable[[Any], bool] = lambda r: True
    ) -> list[Any]:
        """Everything kept that arrives within `seconds` (to prove nothing more comes)."""
        assert self.consumer is not None
        found: list[Any] = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            batches = await self.consumer.getmany(timeout_ms=200)
            found += [r for records in batches.values() for r in records if keep(r)]
        return found

    async def collect(
        self,
        until: Callable[[list[Any]], bool],
        timeout: float = 30.0,
        keep: Callable[[Any], bool] = lambda r: True,
    ) -> list[Any]:
        """Records kept by `keep`, read until `until(records)` holds; fails on timeout."""
        assert self.consumer is not None
        found: list[Any] = []
        deadline = time.monotonic() + timeout
        while not until(found):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s with {len(found)} records")
            batches = await self.consumer.getmany(timeout_ms=200)
            found += [r for records in batches.values() for r in records if keep(r)]
        return found


async def commit_end_offsets(bootstrap: str, group: str, service: str) -> None:
    """Commit the current end of every partition of `service`'s topics for `group`."""
    partitions = await topic_partitions(bootstrap, read_by(service))
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        ends = await consumer.end_offsets(partitions)
        consumer.assign(partitions)
        await consumer.commit(dict(ends))
    finally:
        await consumer.stop()


async def fresh_group(bootstrap: str, service: str, prefix: str) -> str:
    """A new consumer group for `service`, with committed offsets at the topics' current ends.

    The service starts exactly there: no history to replay, and nothing published afterwards is
    skipped. "latest" would not do: it is resolved lazily, per partition, by whichever replica
    first owns it, so records published before that (or a batch whose commit a rebalance
    refused) would be skipped for good."""
    group = unique(prefix)
    await commit_end_offsets(bootstrap, group, service)
    return group


async def group_members(bootstrap: str, group: str) -> tuple[str, list[Any]]:
    """Consumer group `group`'s state ("Stable", "PreparingRebalance", ...) and its members, as
    the broker describes them (each member: id, ..., metadata, assignment)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (response,) = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    _, _, state, _, _, members = response.groups[0][:6]
    return state, list(members)


async def wait_group_stable(bootstrap: str, group: str, timeout: float = 60.0) -> None:
    """Wait until consumer group `group` is stable with members (every partition assigned)."""

    async def stable() -> bool:
        state, members = await group_members(bootstrap, group)
        return state == "Stable" and bool(members)

    try:
        await wait_until(stable, timeout)
    except NotReady:
        raise NotReady(f"consumer group {group} not stable in {timeout}s") from None


async def partition_owners(bootstrap: str, group: str) -> dict[tuple[str, int], str]:
    """(topic, partition) -> the member of `group` it is assigned to, once the group is stable."""
    state, members = await group_members(bootstrap, group)
    if state != "Stable":
        return {}
    return {
        (tp.topic, tp.partition): member[0]
        for member in members
        for tp in ConsumerProtocolMemberAssignment.decode(member[-1]).partitions()
    }


def partition_of(topic: str, key: str) -> tuple[str, int]:
    """Where Kafka's default partitioner puts `key` (murmur2, as every producer here)."""
    return topic, (murmur2(key.encode()) & 0x7FFFFFFF) % TOPICS[topic].partitions
