"""Leader failover under the sidecar: a 3-node KRaft cluster loses a broker mid-stream."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sidecar.testbed import KRaftCluster, create_topic
from sidecar.testbed.probe import metadata
from tests.helpers import RawClient, make_config, open_server
from tests.test_e2e_kafka import Agent, assert_topic_holds, produced_count

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


@pytest.mark.timeout(300)
async def test_killing_a_broker_loses_duplicates_and_reorders_nothing(tmp_path: Path) -> None:
    cluster = await asyncio.to_thread(KRaftCluster, 3)
    try:
        bs = cluster.bootstrap_servers
        topic = await create_topic(
            bs, partitions=3, replication_factor=3, config={"min.insync.replicas": "2"}
        )
        config = make_config(tmp_path, bootstrap_servers=bs, topic=topic)
        async with open_server(config, kafka=True) as server:
            streams = [(f"task-{i % 6}", f"m{i}") for i in range(12)]
            agent = Agent(await RawClient.connect(config.socket), streams)
            await agent.open()
            await agent.burst("a", 20)
            await server.sink.flush()
            # Kill the leader of partition 0, so at least one partition must fail over.
            meta = await asyncio.to_thread(metadata, cluster.address(2), [topic])
            leader = meta.topics[topic][0].leader
            assert leader in (1, 2, 3)
            await asyncio.to_thread(cluster.kill, leader)
            await agent.burst("b", 20)
            await agent.finish(timeout=180)
            produced = produced_count(server.metrics)
            assert server.metrics.producer_recoveries._value.get() == 0
            await agent.client.aclose()
        await assert_topic_holds(bs, topic, produced, agent)
    finally:
        await asyncio.to_thread(cluster.close)
