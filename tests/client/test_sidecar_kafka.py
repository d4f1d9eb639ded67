"""The reconnecting client against a real `sidecar run` process and real Kafka: the
sidecar killed and restarted under a streaming client, and backpressure."""

from __future__ import annotations

import asyncio
import os
import signal
from collections import defaultdict
from pathlib import Path

import orjson
import pytest

from sidecar.sink.kafka import ConsumedRecord, open_consumer
from sidecar_client import Delivery, FrameRejected, NotDelivered, SidecarClient, open_sidecar
from sidecar_client.reassemble import Reassembler
from testbed.process import start_sidecar
from tests.conftest import NewTopic
from tests.helpers import done, start, text_delta

pytestmark = pytest.mark.kafka


async def read_to_end(bootstrap: str, topic: str, timeout: float = 60) -> list[ConsumedRecord]:
    """Every record in the topic as of now (all partitions, up to their end offsets)."""
    out: list[ConsumedRecord] = []
    async with open_consumer(bootstrap, topic) as reader, asyncio.timeout(timeout):
        ends = await reader.end_offsets()
        for p, end in ends.items():
            while await reader.position(p) < end:
                out.extend(await reader.poll(200))
    return out


def text_of(rec: ConsumedRecord) -> str:
    value = orjson.loads(rec.value or b"{}")
    delta = value.get("delta") or {}
    return str(delta.get("text_delta") or "")


@pytest.mark.timeout(180)
async def test_sidecar_killed_and_restarted_under_a_streaming_client(
    tmp_path: Path, kafka_bootstrap: str, new_topic: NewTopic
) -> None:
    topic = await new_topic(partitions=3)
    sock = tmp_path / "s.sock"
    # A long window with a small size bound: deltas are flushed (and acked) every 64
    # chars, so at the kill every stream has deltas written but not yet acknowledged.
    opts = ("--flush-interval-ms", "60000", "--max-buffered-chars", "64")
    proc = await start_sidecar(sock, kafka_bootstrap, topic, *opts)
    reported: list[Delivery] = []
    sidecar = SidecarClient(sock, acks="all", connect_timeout=60, on_undelivered=reported.append)
    streams = [(f"task-{i}", f"m{i}") for i in range(4)]
    sent: list[tuple[Delivery, str]] = []  # every delta, with its text

    async def burst(tag: str, n: int) -> None:
        for j in range(n):
            for t, m in streams:
                piece = f"{tag}{j} "
                sent.append((await sidecar.send(text_delta(t, m, piece)), piece))

    try:
        for t, m in streams:
            await sidecar.send(start(t, m))
        await burst("a", 40)
        await sent[-1 - len(streams) * 20][0].wait(30)  # the sidecar is acking
        await burst("b", 30)
        proc.kill()  # SIGKILL: no drain, no synthesized terminals
        await proc.wait()
        await burst("c", 30)  # the first of these hit the dead socket; the rest wait
        proc = await start_sidecar(sock, kafka_bootstrap, topic, *opts)  # same socket
        await burst("d", 30)  # the new sidecar reopens each stream implicitly
        ends = [await sidecar.send(done(t, m)) for t, m in streams]
        await sidecar.flush(timeout=60)
        for end in ends:
            assert (await end).exact
    finally:
        await sidecar.aclose()
        if proc.returncode is None:
            proc.terminate()
            await proc.wait()
    assert sidecar.connects == 2

    # Every frame has an outcome; those without an ack were all reported, and only those.
    assert all(d.done() for d, _ in sent)
    unacked = [d for d, _ in sent if d.ack is None]
    assert {id(d) for d in reported} == {id(d) for d in unacked}
    assert all(isinstance(d.error, NotDelivered | FrameRejected) for d in unacked)
    lost = [d for d in unacked if isinstance(d.error, NotDelivered)]
    assert lost, "the kill must catch deltas written but not acknowledged"

    # Every acked frame is in Kafka, in the record its ack names: the frames acked with
    # one (partition, offset) are exactly the deltas merged into that record, in order.
    by_record: dict[tuple[int, int], str] = defaultdict(str)
    for d, piece in sent:
        if d.ack is not None:
            assert d.ack.exact
            by_record[(d.ack.partition, d.ack.offset)] += piece
    consumed = await read_to_end(kafka_bootstrap, topic)
    records = {(r.partition, r.offset): r for r in consumed}
    for where, text in by_record.items():
        assert where in records, f"acked at {where} but not in Kafka"
        assert text_of(records[where]) == text, where
    # Two sidecar instances wrote: each stream was resumed by the second (its seq counts
    # from 0 again under the new `sidecar_instance`), which the reassembler takes as no
    # gap; every stream then ended with the agent's done.
    assert len({r.headers["sidecar_instance"] for r in consumed}) == 2
    asm = Reassembler()
    ended = [
        s
        for r in sorted(consumed, key=lambda r: (r.partition, r.offset))
        if (s := asm.feed(r.value, r.headers, key=r.key, partition=r.partition, offset=r.offset))
    ]
    assert asm.violations == []
    assert sorted(s.key for s in ended) == sorted(streams)
    assert all(s.resumed == 1 and s.terminal_reason == "client" for s in ended)


@pytest.mark.timeout(120)
async def test_backpressure_makes_the_client_wait_not_grow(
    tmp_path: Path, kafka_bootstrap: str, new_topic: NewTopic
) -> None:
    topic = await new_topic(partitions=1)
    sock = tmp_path / "s.sock"
    proc = await start_sidecar(sock, kafka_bootstrap, topic)
    high_water = 64 * 1024
    sidecar = SidecarClient(sock, high_water=high_water)
    n, frame = 3000, 2000  # ~6 MB of deltas: many times every buffer on the way
    sent = 0
    stalled = asyncio.Event()

    async def agent() -> None:
        nonlocal sent
        for i in range(n):
            in_transport = sidecar.unsent_bytes - sidecar.buffered_bytes
            if sidecar.buffered_bytes >= high_water and in_transport > high_water:
                # The kernel's socket buffer is full (the transport holds more than its
                # high-water mark), then the queue: this send waits for the sidecar.
                stalled.set()
            await sidecar.send(text_delta("t", "m", f"{i:05d}" + "x" * frame))
            sent += 1

    writer = asyncio.create_task(asyncio.sleep(0))
    try:
        await (await sidecar.send(done("t", "warm-up"))).wait(30)
        os.kill(proc.pid, signal.SIGSTOP)  # the sidecar stops reading its socket
        writer = asyncio.create_task(agent())
        await asyncio.wait_for(stalled.wait(), 30)
        stalled_at = sent
        await asyncio.sleep(0.5)  # give a broken bound the chance to show itself
        assert not writer.done()
        assert sent == stalled_at < n  # the agent waits...
        # ...and holds at most the queue's high-water mark plus one frame, and what the
        # transport buffers on top (its own 64 KiB high-water mark plus one write).
        assert sidecar.unsent_bytes < 2 * high_water + 2 * (frame + 200)
        os.kill(proc.pid, signal.SIGCONT)
        await asyncio.wait_for(writer, 60)
        end = await sidecar.send(done("t", "m"))
        ack = await end.wait(60)
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        writer.cancel()
        await sidecar.aclose()
        proc.terminate()
        await proc.wait()
    assert sidecar.undelivered == 0
    records = [r for r in await read_to_end(kafka_bootstrap, topic) if r.offset <= ack.offset]
    texts = [text_of(r) for r in records if r.headers["message_id"] == b"m"]
    joined = "".join(texts)
    assert [joined[i * (frame + 5) : i * (frame + 5) + 5] for i in range(n)] == [
        f"{i:05d}" for i in range(n)
    ]


@pytest.mark.timeout(120)
async def test_unknown_delta_types_and_null_deltas_reach_kafka_as_sent(
    tmp_path: Path, kafka_bootstrap: str, new_topic: NewTopic
) -> None:
    # PROTOCOL §2.1 forward compatibility, end to end: with a long coalescing window
    # around them, the text deltas merge, the others pass through unmerged, in order,
    # byte for byte, unknown fields kept.
    topic = await new_topic(partitions=1)
    sock = tmp_path / "s.sock"
    proc = await start_sidecar(sock, kafka_bootstrap, topic, "--flush-interval-ms", "60000")
    future = text_delta("t", "m", None, future_field={"kept": [1, 2]})
    future["delta"] = {"type": "image_delta", "url_delta": "http", "extra": True}
    nothing = text_delta("t", "m", None)
    nothing["delta"] = None
    sent = [
        text_delta("t", "m", "a"),  # the leading edge: out at once
        text_delta("t", "m", "b"),
        text_delta("t", "m", "c"),
        future,
        nothing,
        text_delta("t", "m", "d"),
        done("t", "m"),
    ]
    try:
        async with open_sidecar(sock, acks="all") as sidecar:
            deliveries = [await sidecar.send(u) for u in sent]
            acks = [await d.wait(60) for d in deliveries]
    finally:
        proc.terminate()
        await proc.wait()
    records = sorted(await read_to_end(kafka_bootstrap, topic), key=lambda r: r.offset)
    values = [orjson.loads(r.value or b"null") for r in records]
    assert [v["delta"] if v["type"] == "delta" else v["type"] for v in values] == [
        {"type": "text", "text_delta": "a"},
        {"type": "text", "text_delta": "bc"},
        future["delta"],
        None,
        {"type": "text", "text_delta": "d"},
        "done",
    ]
    assert records[2].value == orjson.dumps(future)  # the agent's bytes, untouched
    # b and c share their record's ack; the others have their own.
    assert acks[1] == acks[2] != acks[3]
    assert [int(r.headers["seq"]) for r in records] == list(range(6))
