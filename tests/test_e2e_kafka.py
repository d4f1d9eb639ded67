"""The whole sidecar against a real Kafka broker: what lands in the topic is the contract."""

from __future__ import annotations

import asyncio
import contextlib
import random
import struct
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from sidecar.config import Config
from sidecar.metrics import Metrics
from sidecar.server import Server
from sidecar.sink.kafka import ConsumedRecord, open_consumer, partition_for
from testbed import Broker, KRaftCluster
from tests.helpers import RawClient, done, full, make_config, open_server, start, text_delta

pytestmark = pytest.mark.kafka


async def consume(bootstrap: str, topic: str, n: int, timeout: float = 60) -> list[ConsumedRecord]:
    out: list[ConsumedRecord] = []
    async with open_consumer(bootstrap, topic) as records:
        async with asyncio.timeout(timeout):
            async for rec in records:
                out.append(rec)
                if len(out) >= n:
                    break
    return out


def check_streams(records: list[ConsumedRecord]) -> dict[tuple[str, str], list[ConsumedRecord]]:
    """Assert PROTOCOL §5 order per stream; return the records grouped by stream."""
    streams: dict[tuple[str, str], list[ConsumedRecord]] = defaultdict(list)
    partition_of: dict[str, int] = {}
    for rec in sorted(records, key=lambda r: (r.partition, r.offset)):
        assert rec.key is not None
        task = rec.key.decode()
        # Every stream of a task on one partition.
        assert partition_of.setdefault(task, rec.partition) == rec.partition
        streams[(task, rec.headers["message_id"].decode())].append(rec)
    for key, recs in streams.items():
        kinds = [r.headers["type"].decode() for r in recs]
        assert [int(r.headers["seq"]) for r in recs] == list(range(len(recs))), key
        assert kinds[-1] in ("done", "full"), key
        assert sum(k in ("done", "full") for k in kinds) == 1, key
        assert "start" not in kinds[1:], key
        assert "terminal_reason" in recs[-1].headers
    return streams


def delta_text(recs: list[ConsumedRecord]) -> str:
    out = []
    for r in recs:
        if r.headers["type"] == b"delta":
            assert r.value is not None
            out.append(orjson.loads(r.value)["delta"]["text_delta"] or "")
    return "".join(out)


async def test_many_streams_ordered_exactly_once(
    tmp_path: Path, kafka_bootstrap: str, new_topic: Any
) -> None:
    topic = await new_topic(partitions=3)
    config = make_config(tmp_path, bootstrap_servers=kafka_bootstrap, topic=topic, linger_ms=2)
    rng = random.Random(7)
    expected: dict[tuple[str, str], str] = {}
    async with open_server(config, kafka=True) as server:
        clients = [await RawClient.connect(config.socket) for _ in range(4)]
        for c in clients:
            await c.send({"type": "hello", "acks": "terminal"})
        # 40 streams over 10 tasks, interleaved across 4 connections.
        plans = []
        for i in range(40):
            task, msg = f"task-{i % 10}", f"msg-{i}"
            words = [f"w{j}-{rng.randint(0, 99)} " for j in range(rng.randint(1, 120))]
            expected[(task, msg)] = "".join(words)
            plans.append((clients[i % 4], task, msg, words))
        for c, task, msg, _ in plans:
            await c.send(start(task, msg))
        for step in range(120):
            for c, task, msg, words in plans:
                if step < len(words):
                    await c.send(text_delta(task, msg, words[step]))
        for c, task, msg, _ in plans:
            await c.send(done(task, msg, index=0))
        acks = [await c.read_replies(10, timeout=60) for c in clients]
        assert all(a["type"] == "ack" for replies in acks for a in replies)
        total = produced_count(server.metrics)
        for c in clients:
            await c.aclose()
    records = await consume(kafka_bootstrap, topic, int(total))
    streams = check_streams(records)
    assert set(streams) == set(expected)
    for key, recs in streams.items():
        assert recs[0].headers["type"] == b"start"
        assert recs[-1].headers["type"] == b"done"
        assert recs[-1].headers["terminal_reason"] == b"client"
        assert delta_text(recs) == expected[key]
        assert recs[0].partition == partition_for(key[0], 3)
    # Coalescing happened: fewer records than deltas.
    n_deltas = sum(len(words) for _, _, _, words in plans)
    n_delta_records = sum(r.headers["type"] == b"delta" for r in records)
    assert n_delta_records < n_deltas
    # Acks name the terminal's real partition and offset.
    terminal_at = {(r.partition, r.offset) for recs in streams.values() for r in recs[-1:]}
    for replies in acks:
        for a in replies:
            assert (a["partition"], a["offset"]) in terminal_at


async def test_delivery_failed_when_kafka_refuses(
    tmp_path: Path, kafka_bootstrap: str, new_topic: Any
) -> None:
    topic = await new_topic(partitions=1, config={"max.message.bytes": "2048"})
    config = make_config(tmp_path, bootstrap_servers=kafka_bootstrap, topic=topic)
    async with open_server(config, kafka=True) as server:
        c = await RawClient.connect(config.socket)
        await c.send({"type": "hello", "acks": "terminal"})
        await c.send(full("t", "big", "x" * 10_000), full("t", "small", "fine"))
        replies = await c.read_replies(2, timeout=30)
        by_seq = {r["seq"]: r for r in replies}
        assert by_seq[2]["type"] == "error"
        assert by_seq[2]["code"] == "delivery_failed"
        assert by_seq[3]["type"] == "ack"
        assert server.metrics.sample("sidecar_delivery_failures_total") == 1
        await c.aclose()


class Agent:
    """One connection streaming text deltas into many streams, remembering what it sent,
    so a test can disturb Kafka between bursts and then check the topic."""

    def __init__(self, client: RawClient, streams: list[tuple[str, str]]) -> None:
        self.client = client
        self.streams = streams
        self.expected = dict.fromkeys(streams, "")

    async def open(self) -> None:
        await self.client.send({"type": "hello", "acks": "terminal"})
        await self.client.send(*(start(t, m) for t, m in self.streams))

    async def burst(self, tag: str, n: int) -> None:
        for j in range(n):
            for t, m in self.streams:
                piece = f"{tag}{j} "
                self.expected[(t, m)] += piece
                await self.client.send(text_delta(t, m, piece))
            await asyncio.sleep(0.01)  # spread over several coalescing windows

    async def finish(self, timeout: float) -> None:
        """End every stream and wait for each terminal's ack (so Kafka has it all)."""
        await self.client.send(*(done(t, m) for t, m in self.streams))
        replies = await self.client.read_replies(len(self.streams), timeout=timeout)
        assert {r["type"] for r in replies} == {"ack"}


@contextlib.asynccontextmanager
async def open_agent(
    config: Config, streams: list[tuple[str, str]]
) -> AsyncIterator[tuple[Server, Agent]]:
    """A sidecar on `config` and an Agent that has opened `streams`, for the test to stream
    and disturb Kafka in between. On a clean exit: end every stream and wait for the acks;
    check that no producer recovery was needed and that the topic holds every stream once,
    in order (PROTOCOL §5)."""
    async with open_server(config, kafka=True) as server:
        agent = Agent(await RawClient.connect(config.socket), streams)
        await agent.open()
        yield server, agent
        await agent.finish(timeout=180)
        produced = produced_count(server.metrics)
        # A broker stopped, killed or short of in-sync replicas needs no new producer: the
        # idempotent producer retries each batch with its own sequence number.
        assert server.metrics.sample("sidecar_producer_recoveries_total") == 0
        await agent.client.aclose()
    await assert_topic_holds(config.bootstrap_servers, config.topic, produced, agent)


def produced_count(metrics: Metrics) -> int:
    kinds = ("start", "delta", "full", "done")
    return int(sum(metrics.sample("sidecar_records_produced_total", type=k) for k in kinds))


async def assert_topic_holds(bootstrap: str, topic: str, produced: int, agent: Agent) -> None:
    """Every stream in order, each text exactly once, no record twice (PROTOCOL §5)."""
    records = await consume(bootstrap, topic, produced, timeout=120)
    got = check_streams(records)
    assert set(got) == set(agent.streams)
    for key, recs in got.items():
        assert delta_text(recs) == agent.expected[key], key
    assert len({(r.partition, r.offset) for r in records}) == len(records) == produced


_CODECS = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}


def stored_codecs(cluster: KRaftCluster, topic: str) -> set[str]:
    """The codec of every record batch in the topic's log segments on disk (the v2 batch
    header: attributes, whose low 3 bits name the codec, sit 21 bytes in)."""
    codecs = set()
    for segment in cluster.root.glob(f"node-*/data/{topic}-*/*.log"):
        data, i = segment.read_bytes(), 0
        while i + 23 <= len(data):
            (length,) = struct.unpack_from(">i", data, i + 8)
            (attributes,) = struct.unpack_from(">h", data, i + 21)
            codecs.add(_CODECS[attributes & 7])
            i += 12 + length
    return codecs


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
async def test_every_compression_codec_round_trips(
    tmp_path: Path, kafka_broker: Broker, new_topic: Any, codec: str
) -> None:
    """`--compression`: the broker stores each codec's batches as sent (snappy, lz4 and
    zstd come from cramjam) and a consumer reads back every stream intact."""
    topic = await new_topic(partitions=2)
    bootstrap = kafka_broker.bootstrap_servers
    config = make_config(tmp_path, bootstrap_servers=bootstrap, topic=topic, compression=codec)
    async with open_agent(config, [("t1", "a"), ("t2", "b")]) as (_, agent):
        await agent.burst("x", 5)
    if isinstance(kafka_broker, KRaftCluster):  # its log files are ours to read
        assert stored_codecs(kafka_broker, topic) == {codec}
