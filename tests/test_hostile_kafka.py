"""Issue 10 against a real broker that goes away: the shutdown deadline holds whatever
Kafka does (failure 8), and expired records end their stream with a delivery_failed
terminal instead of a silent hole (failure 9)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from sidecar.sink.kafka import open_consumer
from testbed import create_topic
from testbed.kraft import KRaftCluster
from testbed.process import start_sidecar
from tests.helpers import RawClient, done, make_config, open_server, start, text_delta
from tests.test_e2e_kafka import consume

pytestmark = pytest.mark.kafka


@pytest.fixture
def broker_up(own_broker: KRaftCluster) -> Iterator[KRaftCluster]:
    """The module's broker, serving at the start of the test and again after it."""
    yield own_broker
    own_broker.start()


@pytest.mark.timeout(180)
async def test_sigterm_exits_by_the_deadline_with_kafka_down(
    tmp_path: Path, broker_up: KRaftCluster
) -> None:
    bs = broker_up.bootstrap_servers
    topic = await create_topic(bs, name="deadline", partitions=1)
    sock = tmp_path / "s.sock"
    timeout = 3.0
    # A request timeout far past the deadline: stopping the producer used to wait for it
    # (55 s against a 25 s deadline in the issue).
    proc = await start_sidecar(
        sock,
        bs,
        topic,
        "--shutdown-timeout",
        str(timeout),
        "--request-timeout-ms",
        "30000",
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        c = await RawClient.connect(sock)
        await c.send({"type": "hello", "acks": "all"}, start("t", "m"))
        assert (await c.read_replies(1, timeout=60))[0]["type"] == "ack"  # producer is up
        await asyncio.to_thread(broker_up.stop)
        await c.send(*(text_delta("t", "m", f"{i} ") for i in range(50)))
        await asyncio.sleep(0.5)  # let the sidecar hand them to the producer (in flight)
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 60)
        took = time.monotonic() - signalled
        assert proc.stderr is not None
        err = (await proc.stderr.read()).decode()
        assert took <= timeout + 1.0, f"exit after {took:.1f}s\n{err}"
        assert code == 1, err
        assert "not acknowledged by Kafka" in err, err
        assert not sock.exists()
        await c.aclose()
    finally:
        if proc.returncode is None:
            proc.kill()


@pytest.mark.timeout(180)
async def test_expired_records_end_their_stream_with_delivery_failed(
    tmp_path: Path, broker_up: KRaftCluster
) -> None:
    """Kafka is away longer than --delivery-timeout-ms: what was accepted expires. The
    stream ends right there (a delivery_failed done, delivered once Kafka is back), the
    acks=none writer is told, later frames get stream_closed, nothing else follows.

    (A broker that is merely down keeps records handed to the producer in flight, retried
    forever; what expires is what waits for a producer, as here where the sidecar comes
    up during the outage. Holes in the middle of a stream are covered hermetically in
    tests/test_delivery_failed.py.)"""
    bs = broker_up.bootstrap_servers
    topic = await create_topic(bs, name="holes", partitions=1)
    await asyncio.to_thread(broker_up.stop)
    config = make_config(
        tmp_path,
        bootstrap_servers=bs,
        topic=topic,
        flush_interval_ms=0,
        request_timeout_ms=1000,
        delivery_timeout_ms=3000,
    )
    async with open_server(config, kafka=True) as server:
        quiet = await RawClient.connect(config.socket)  # acks=none
        await quiet.send(start("t", "m"), text_delta("t", "m", "lost "))
        (err,) = await quiet.read_replies(1, timeout=60)
        assert (err["seq"], err["code"]) == (1, "delivery_failed"), err  # the start line
        await quiet.send(text_delta("t", "m", "late"), done("t", "m"))
        late = await quiet.read_replies(3, timeout=10)
        assert [r["code"] for r in late[1:]] == ["stream_closed", "stream_closed"]
        await asyncio.to_thread(broker_up.start)
        await asyncio.wait_for(server.sink.flush(), 90)  # the marker is delivered
        text = server.metrics.render().decode()
        assert 'sidecar_streams_ended_total{reason="delivery_failed"} 1.0' in text
        assert "sidecar_delivery_failures_total 2.0" in text
        await quiet.aclose()
    (record,) = await consume(bs, topic, 1)
    async with open_consumer(bs, topic) as reader:
        assert await reader.end_offsets() == {0: 1}  # nothing after the terminal
    h = record.headers
    assert (h["type"], h["seq"], h["terminal_reason"]) == (b"done", b"0", b"delivery_failed")
    assert h["sidecar_instance"] == server.instance.encode()
    assert h["writer_uid"] == str(os.getuid()).encode()
    assert orjson.loads(record.value or b"{}")["parent_task_message"]["id"] == "m"
