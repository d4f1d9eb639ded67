"""Lifecycle against real Kafka: broker outages, bounded memory, SIGTERM in a real process."""

from __future__ import annotations

import asyncio
import logging
import re
import signal
from pathlib import Path

import orjson
import pytest

from testbed import create_topic
from testbed.base import free_ports
from testbed.kraft import KRaftCluster
from testbed.process import start_sidecar
from tests.conftest import NewTopic
from tests.helpers import (
    RawClient,
    done,
    full,
    line,
    make_config,
    open_server,
    start,
    text_delta,
    until_kafka_state,
    watch_pause,
)
from tests.sidecar_process import status_bytes, until_metric
from tests.test_e2e_kafka import check_streams, consume, delta_text, open_agent

pytestmark = pytest.mark.kafka


@pytest.mark.timeout(240)
async def test_outage_loses_duplicates_and_reorders_nothing(
    tmp_path: Path, own_broker: KRaftCluster
) -> None:
    bs = own_broker.bootstrap_servers
    topic = await create_topic(bs, name="outage", partitions=3)
    # The outage (a broker stop and start, ~5 s) outlasts the request timeout: aiokafka
    # would expire the leaderless batches, and resending them could duplicate.
    config = make_config(tmp_path, bootstrap_servers=bs, topic=topic, request_timeout_ms=2000)
    streams = [(f"task-{i % 4}", f"m{i}") for i in range(12)]
    async with open_agent(config, streams) as (server, agent):
        await agent.burst("a", 20)
        await asyncio.to_thread(own_broker.stop)
        await agent.burst("b", 20)  # accepted and held while Kafka is away
        assert server.sink.pending_records > 0  # held, not lost, while Kafka is away
        await asyncio.to_thread(own_broker.start)
        await agent.burst("c", 20)
    # open_agent's exit checked the topic, and that the restart needed no producer
    # recovery (the idempotent producer retries it).


@pytest.mark.timeout(240)
async def test_memory_bounded_and_backpressure_while_kafka_is_down(
    tmp_path: Path, own_broker: KRaftCluster, caplog: pytest.LogCaptureFixture
) -> None:
    """Kafka lost mid-stream and back: memory stays bounded, reads pause (and the paused
    time is counted), one log line when Kafka is lost and one when it is back."""
    caplog.set_level(logging.INFO, logger="sidecar")
    bs = own_broker.bootstrap_servers
    topic = await create_topic(bs, name="bounded", partitions=3)
    limit = 256 * 1024
    config = make_config(
        tmp_path, bootstrap_servers=bs, topic=topic, max_pending_bytes=limit, flush_interval_ms=0
    )
    n = 2000  # ~4 MB of deltas, 16x the limit
    paused_seconds = "sidecar_backpressure_seconds_total"
    async with open_server(config, kafka=True) as server:
        c = await RawClient.connect(config.socket)
        await c.send({"type": "hello", "acks": "terminal"}, start("t", "m"))
        # Mid-stream: the producer is up and has delivered the stream's start.
        async with asyncio.timeout(60):
            while server.metrics.produced["start"] < 1:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        await asyncio.to_thread(own_broker.stop)
        payload = b"".join(line(text_delta("t", "m", f"{i:05d}" + "x" * 2000)) for i in range(n))
        paused = watch_pause(server)
        writer = asyncio.create_task(c.send(payload, done("t", "m")))
        await asyncio.wait_for(paused.wait(), 60)
        before = server.metrics.sample(paused_seconds)
        await asyncio.sleep(0.5)  # give a broken bound the chance to show itself
        assert server.sink.pending_bytes < limit + 512 * 1024
        assert not writer.done()  # the agent feels the backpressure
        # Nothing is acknowledged: after stall_after seconds the server says Kafka is lost.
        await until_kafka_state(server, "not_acknowledging")
        assert server.sink.paused
        during = server.metrics.sample(paused_seconds)
        assert during > before and during > 0  # counted while paused, the pause so far too
        await asyncio.to_thread(own_broker.start)
        await until_kafka_state(server, None)
        await asyncio.wait_for(writer, 120)
        # Everything is read and delivered once the terminal is acked (reads resume and
        # pause again while the socket still holds the end of the payload).
        (ack,) = await c.read_replies(1, timeout=120)
        assert ack["type"] == "ack"
        await asyncio.wait_for(server.sink.flush(), 120)
        assert not server.hub.paused
        after = server.metrics.sample(paused_seconds)
        assert after >= during
        await asyncio.sleep(0.2)  # give a counter that runs on after the resume the chance
        assert server.metrics.sample(paused_seconds) == after
        await c.aclose()
    said = [r.getMessage() for r in caplog.records if r.name.startswith("sidecar")]
    lost = [s for s in said if s.startswith("Kafka unavailable")]
    back = [s for s in said if s.startswith("Kafka is taking records again")]
    assert len(lost) == 1, lost  # once, not once per retry or per check
    assert len(back) == 1, back
    waiting = re.compile(r"; [1-9]\d* records \(\d+ bytes\) waiting")
    assert lost[0].startswith("Kafka unavailable: not_acknowledging"), lost
    assert waiting.search(lost[0]), lost  # the deltas held while Kafka is away
    assert back[0].startswith("Kafka is taking records again (was not_acknowledging); "), back
    assert re.search(r"; \d+ records \(\d+ bytes\) waiting", back[0]), back
    records = await consume(bs, topic, n + 2)
    (recs,) = check_streams(records).values()
    assert len(recs) == n + 2
    texts = [
        orjson.loads(r.value or b"{}").get("delta", {}).get("text_delta", "")[:5]
        for r in recs[1:-1]
    ]
    assert texts == [f"{i:05d}" for i in range(n)]


@pytest.mark.timeout(120)
async def test_sigterm_drains_ends_streams_and_exits_0(
    tmp_path: Path, kafka_bootstrap: str, new_topic: NewTopic
) -> None:
    topic = await new_topic(partitions=2)
    sock = tmp_path / "s.sock"
    proc = await start_sidecar(
        sock,
        kafka_bootstrap,
        topic,
        "--shutdown-timeout",
        "20",
        "--flush-interval-ms",
        "60000",
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        c = await RawClient.connect(sock)
        await c.send({"type": "hello", "acks": "all"}, start("t1", "open"), start("t2", "closed"))
        await c.send(text_delta("t1", "open", "first "), text_delta("t1", "open", "pending"))
        await c.send(full("t2", "closed", "all of it"))
        await c.read_replies(4, timeout=30)  # hello aside, everything but the pending delta
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 30)
        assert proc.stderr is not None
        err = (await proc.stderr.read()).decode()
        assert code == 0, err
        assert not sock.exists()
        await c.aclose()
    finally:
        if proc.returncode is None:
            proc.kill()
    records = await consume(kafka_bootstrap, topic, 6)
    got = check_streams(records)
    opened = got[("t1", "open")]
    assert [r.headers["type"] for r in opened] == [b"start", b"delta", b"delta", b"done"]
    assert opened[-1].headers["terminal_reason"] == b"shutdown"
    assert delta_text(opened) == "first pending"
    assert got[("t2", "closed")][-1].headers["terminal_reason"] == b"client"


@pytest.mark.timeout(300)
async def test_rss_growth_in_an_outage_stays_within_the_pending_limit(
    tmp_path: Path, own_broker: KRaftCluster
) -> None:
    """A real `sidecar run` process: the broker stops, an agent writes 5x the limit, the
    sidecar pauses it; its RSS has grown by at most 1.5x --max-pending-bytes (+ 8 MiB),
    peak included. The broker returns and every delta arrives, in order."""
    bs = own_broker.bootstrap_servers
    topic = await create_topic(bs, name="rss", partitions=3)
    limit = 16 << 20
    (port,) = free_ports(1)
    sock = tmp_path / "s.sock"
    proc = await start_sidecar(
        sock,
        bs,
        topic,
        *("--max-pending-bytes", str(limit), "--flush-interval-ms", "0"),
        *("--http-host", "127.0.0.1", "--http-port", str(port), "--log-level", "error"),
    )
    n = 40_000  # 2 KB deltas: ~80 MB, five times the limit
    try:
        c = await RawClient.connect(sock)
        await c.send({"type": "hello", "acks": "terminal"}, full("warm", "up", "x"))
        await c.read_replies(1, timeout=60)  # the producer is up and has delivered once
        base = status_bytes(proc.pid, "VmRSS")
        await asyncio.to_thread(own_broker.stop)
        payload = b"".join(line(text_delta("t", "m", f"{i:06d}" + "x" * 2000)) for i in range(n))
        writer = asyncio.create_task(c.send(start("t", "m"), payload, done("t", "m")))
        await until_metric(port, "sidecar_backpressure", 1)
        await asyncio.sleep(1.0)  # give a broken bound the chance to show itself
        assert not writer.done()  # the agent feels the backpressure
        grown = status_bytes(proc.pid, "VmHWM") - base
        assert grown <= 1.5 * limit + (8 << 20), f"RSS grew {grown >> 20} MiB"
        await asyncio.to_thread(own_broker.start)
        await asyncio.wait_for(writer, 180)
        replies = await c.read_replies(2, timeout=180)
        assert [r["type"] for r in replies] == ["ack", "ack"]
        await c.aclose()
    finally:
        proc.terminate()
        await proc.wait()
    records = await consume(bs, topic, n + 3, timeout=120)
    recs = check_streams(records)[("t", "m")]
    assert len(recs) == n + 2
    texts = [orjson.loads(r.value or b"{}")["delta"]["text_delta"][:6] for r in recs[1:-1]]
    assert texts == [f"{i:06d}" for i in range(n)]
