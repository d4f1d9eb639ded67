"""A 3-node KRaft cluster under the sidecar: a broker lost mid-stream, and a partition
left with fewer in-sync replicas than `min.insync.replicas` (NotEnoughReplicas)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed import KRaftCluster, create_topic
from tests.helpers import make_config, until_partition
from tests.test_e2e_kafka import open_agent, produced_count

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster() -> Iterator[KRaftCluster]:
    c = KRaftCluster(3)  # ~13 s to start: one for the module
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
async def healthy(cluster: KRaftCluster) -> KRaftCluster:
    """The shared cluster with every node up again, whatever the last test killed."""
    for node_id in cluster.node_ids:
        if not cluster.node(node_id).running:
            await asyncio.to_thread(cluster.restart, node_id)
    return cluster


async def replicated_topic(bootstrap: str, partitions: int, min_isr: int = 2) -> str:
    return await create_topic(
        bootstrap,
        partitions=partitions,
        replication_factor=3,
        config={"min.insync.replicas": str(min_isr)},
    )


@contextlib.contextmanager
def watch_log(logger: str, text: str) -> Iterator[asyncio.Event]:
    """An event set once `logger` logs a message containing `text` (aiokafka reports a
    retried produce error only in its log)."""
    seen = asyncio.Event()

    class Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if text in record.getMessage():
                seen.set()

    handler, log = Watch(), logging.getLogger(logger)
    log.addHandler(handler)
    try:
        yield seen
    finally:
        log.removeHandler(handler)


@pytest.mark.timeout(300)
async def test_killing_a_broker_loses_duplicates_and_reorders_nothing(
    tmp_path: Path, healthy: KRaftCluster
) -> None:
    bs = healthy.bootstrap_servers
    topic = await replicated_topic(bs, partitions=3)
    config = make_config(tmp_path, bootstrap_servers=bs, topic=topic)
    streams = [(f"task-{i % 6}", f"m{i}") for i in range(12)]
    async with open_agent(config, streams) as (server, agent):
        await agent.burst("a", 20)
        await server.sink.flush()
        # Kill the leader of partition 0, so at least one partition must fail over.
        leader = (await until_partition(bs, topic, lambda p: p.leader > 0, "a leader")).leader
        await asyncio.to_thread(healthy.kill, leader)
        await agent.burst("b", 20)


@pytest.mark.timeout(300)
async def test_too_few_in_sync_replicas_holds_records_until_a_replica_returns(
    tmp_path: Path, healthy: KRaftCluster
) -> None:
    """acks=all with min.insync.replicas=3 and one follower lost: Kafka refuses the writes
    (NotEnoughReplicas), and the sidecar must neither ack, lose nor duplicate any; once
    the follower is back, everything arrives once, in order. (Killing one node, not two:
    every node is also a controller, and two of three down would stop the quorum.)"""
    bs = healthy.bootstrap_servers
    topic = await replicated_topic(bs, partitions=1, min_isr=3)
    config = make_config(tmp_path, bootstrap_servers=bs, topic=topic, request_timeout_ms=3000)
    streams = [(f"task-{i}", f"m{i}") for i in range(4)]
    async with open_agent(config, streams) as (server, agent):
        await agent.burst("a", 10)
        await server.sink.flush()
        state = await until_partition(
            bs, topic, lambda p: sorted(p.isr) == [1, 2, 3], "all replicas in sync"
        )
        follower = next(n for n in healthy.node_ids if n != state.leader)
        await asyncio.to_thread(healthy.kill, follower)
        await until_partition(
            bs, topic, lambda p: follower not in p.isr, f"node {follower} out of the ISR"
        )
        with watch_log("aiokafka", "NotEnoughReplicasError") as refused:
            await agent.burst("b", 10)
            async with asyncio.timeout(60):
                await refused.wait()
        assert server.sink.pending_records > 0  # held, not acked or dropped
        delivered_while_short = produced_count(server.metrics)
        await asyncio.to_thread(healthy.restart, follower)
        await agent.burst("c", 10)
    # open_agent's exit also checked: delivered once, in order, and no producer recovery
    # (aiokafka 0.14 retries NotEnoughReplicas itself, with the original sequence number).
    assert produced_count(server.metrics) > delivered_while_short
