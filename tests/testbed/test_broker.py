"""The test bed's brokers are real Kafka: idempotent produce and consume, partitions and
keys, headers, a restart that keeps port and data, and leader failover in a 3-node cluster."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from testbed import KRaftCluster, create_topic, obtain_broker
from testbed.base import port_accepts
from testbed.probe import Partition
from tests.helpers import until_partition

pytestmark = pytest.mark.kafka
NewTopic = Callable[..., Awaitable[str]]


@asynccontextmanager
async def producer(bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")
    await p.start()
    try:
        yield p
    finally:
        await p.stop()


async def consume(
    bootstrap: str, topic: str, partitions: int, n: int, timeout: float = 30.0
) -> list[Any]:
    """Exactly the first `n` records of `topic` (all partitions, from the start); fails if
    fewer arrive within `timeout`, or if more than `n` are there."""
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await c.start()
    try:
        c.assign([TopicPartition(topic, p) for p in range(partitions)])
        await c.seek_to_beginning()
        out: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            if time.monotonic() > deadline:
                pytest.fail(f"only {len(out)} of {n} records of {topic} within {timeout:.0f}s")
            for batch in (await c.getmany(timeout_ms=500)).values():
                out.extend(batch)
        extra = await c.getmany(timeout_ms=300)
        assert len(out) == n and not any(extra.values()), f"more than {n} records in {topic}"
        return out
    finally:
        await c.stop()


async def test_idempotent_produce_then_consume(kafka_bootstrap: str, new_topic: NewTopic) -> None:
    topic = await new_topic(partitions=1)
    async with producer(kafka_bootstrap) as p:
        sent = [await p.send_and_wait(topic, f"v{i}".encode()) for i in range(20)]
    assert [m.offset for m in sent] == list(range(20))
    records = await consume(kafka_bootstrap, topic, 1, 20)
    assert [r.value for r in records] == [f"v{i}".encode() for i in range(20)]


async def test_keyed_records_stay_on_one_partition_in_order(
    kafka_bootstrap: str, new_topic: NewTopic
) -> None:
    topic = await new_topic()  # 3 partitions
    keys = [f"task-{k}".encode() for k in range(6)]
    placed: dict[bytes, set[int]] = {k: set() for k in keys}
    async with producer(kafka_bootstrap) as p:
        assert await p.partitions_for(topic) == {0, 1, 2}
        for i in range(10):
            acks = await asyncio.gather(
                *[await p.send(topic, f"{i}".encode(), key=k) for k in keys]
            )
            for k, meta in zip(keys, acks, strict=True):
                placed[k].add(meta.partition)
    records = await consume(kafka_bootstrap, topic, 3, 60)
    for k in keys:
        mine = [r for r in records if r.key == k]
        assert {r.partition for r in mine} == placed[k] and len(placed[k]) == 1, k
        assert [r.value for r in mine] == [f"{i}".encode() for i in range(10)], k
    assert len({r.partition for r in records}) > 1, "all keys on one partition: no spread"


async def test_headers_round_trip(kafka_bootstrap: str, new_topic: NewTopic) -> None:
    topic = await new_topic(partitions=1)
    headers = [("kind", b"delta"), ("empty", b""), ("kind", b"again"), ("bin", b"\x00\xff")]
    async with producer(kafka_bootstrap) as p:
        await p.send_and_wait(topic, b"with", key=b"k", headers=headers)
        await p.send_and_wait(topic, b"without", key=b"k")
    with_h, without_h = await consume(kafka_bootstrap, topic, 1, 2)
    assert list(with_h.headers) == headers
    assert list(without_h.headers) == []


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_restart_keeps_port_and_data() -> None:
    # A broker of this test's own (never the session's): it is stopped and started.
    broker = await asyncio.to_thread(obtain_broker, own=True)
    try:
        bs = broker.bootstrap_servers
        topic = await create_topic(bs, partitions=2)
        async with producer(bs) as p:
            for i in range(10):
                await p.send_and_wait(topic, f"before-{i}".encode(), partition=i % 2)
        await asyncio.to_thread(broker.stop)
        assert not port_accepts(bs), "the broker still accepts connections after stop()"
        await asyncio.to_thread(broker.start)
        assert broker.bootstrap_servers == bs and port_accepts(bs), "not back on the same port"
        before = await consume(bs, topic, 2, 10)
        assert sorted(r.value for r in before) == sorted(f"before-{i}".encode() for i in range(10))
        async with producer(bs) as p:
            for i in range(6):
                await p.send_and_wait(topic, f"after-{i}".encode(), partition=i % 2)
        records = await consume(bs, topic, 2, 16)
        for part in (0, 1):
            values = [r.value.decode() for r in records if r.partition == part]
            assert values == [f"before-{i}" for i in range(part, 10, 2)] + [
                f"after-{i}" for i in range(part, 6, 2)
            ]
    finally:
        await asyncio.to_thread(broker.close)


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_cluster_elects_new_leader_when_leader_dies() -> None:
    def full_isr(p: Partition) -> bool:
        return p.leader >= 0 and sorted(p.isr) == [1, 2, 3]

    cluster = await asyncio.to_thread(KRaftCluster, 3)
    try:
        bs = cluster.bootstrap_servers
        assert len(bs.split(",")) == 3
        topic = await create_topic(
            bs, partitions=1, replication_factor=3, config={"min.insync.replicas": "2"}
        )
        state = await until_partition(bs, topic, full_isr, "all three replicas in sync")
        old_leader = state.leader
        async with producer(bs) as p:
            for i in range(10):
                await p.send_and_wait(topic, f"before-{i}".encode())
            await asyncio.to_thread(cluster.kill, old_leader)
            state = await until_partition(
                bs,
                topic,
                lambda part: part.leader not in (old_leader, -1),
                f"a leader other than node {old_leader}",
            )
            assert old_leader not in state.isr and len(state.isr) == 2
            async with asyncio.timeout(60):  # the same producer carries on (acks=all, ISR 2)
                for i in range(10):
                    await p.send_and_wait(topic, f"after-{i}".encode())
        records = await consume(bs, topic, 1, 20)
        assert [r.value.decode() for r in records] == [f"before-{i}" for i in range(10)] + [
            f"after-{i}" for i in range(10)
        ]
        await asyncio.to_thread(cluster.restart, old_leader)  # same ports and data
        await until_partition(bs, topic, full_isr, f"node {old_leader} back in sync")
    finally:
        await asyncio.to_thread(cluster.close)
