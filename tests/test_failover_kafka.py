"""Leader failover under the sidecar: a 3-node KRaft cluster loses a broker mid-stream."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sidecar.testbed import KRaftCluster, create_topic
from sidecar.testbed.probe import metadata
from tests.helpers import RawClient, done, make_config, open_server, start, text_delta
from tests.test_e2e_kafka import check_streams, consume, delta_text

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
        streams = [(f"task-{i % 6}", f"m{i}") for i in range(12)]
        expected = dict.fromkeys(streams, "")
        async with open_server(config, kafka=True) as server:
            c = await RawClient.connect(config.socket)
            await c.send({"type": "hello", "acks": "terminal"})
            await c.send(*(start(t, m) for t, m in streams))

            async def burst(tag: str, n: int) -> None:
                for j in range(n):
                    for t, m in streams:
                        piece = f"{tag}{j} "
                        expected[(t, m)] += piece
                        await c.send(text_delta(t, m, piece))
                    await asyncio.sleep(0.01)  # spread over several coalescing windows

            await burst("a", 20)
            await server.sink.flush()
            # Kill the leader of partition 0, so at least one partition must fail over.
            meta = await asyncio.to_thread(metadata, cluster.address(2), [topic])
            leader = meta.topics[topic][0].leader
            assert leader in (1, 2, 3)
            await asyncio.to_thread(cluster.kill, leader)
            await burst("b", 20)
            await c.send(*(done(t, m) for t, m in streams))
            replies = await c.read_replies(len(streams), timeout=180)
            assert {r["type"] for r in replies} == {"ack"}
            produced = int(
                sum(
                    server.metrics.records_produced.labels(k)._value.get()
                    for k in ("start", "delta", "done")
                )
            )
            assert server.metrics.producer_recoveries._value.get() == 0
            await c.aclose()
        records = await consume(bs, topic, produced, timeout=120)
        got = check_streams(records)
        assert set(got) == set(streams)
        for key, recs in got.items():
            assert delta_text(recs) == expected[key], key
        assert len({(r.partition, r.offset) for r in records}) == len(records) == produced
    finally:
        await asyncio.to_thread(cluster.close)
