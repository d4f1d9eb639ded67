"""The memory budget in a real `sidecar run` process against real Kafka, read from
/proc/<pid>/status: 100k open idle streams, ending them all at once, and RSS after a
flood."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from testbed.base import free_ports
from testbed.process import start_sidecar
from tests.conftest import NewTopic
from tests.helpers import RawClient, done, full, line, start, text_delta
from tests.sidecar_process import metric, reset_peak, rss_down_to, status_bytes, until_metric
from tests.test_e2e_kafka import check_streams, consume

pytestmark = pytest.mark.kafka

KiB = 1024
MiB = 1024 * KiB


async def run_sidecar(tmp_path: Path, bs: str, topic: str, *extra: str) -> tuple[object, int]:
    (port,) = free_ports(1)
    proc = await start_sidecar(
        tmp_path / "s.sock",
        bs,
        topic,
        *("--http-host", "127.0.0.1", "--http-port", str(port), "--log-level", "error"),
        *extra,
    )
    return proc, port


@pytest.mark.timeout(400)
async def test_100k_open_idle_streams_and_ending_them_all_at_once(
    tmp_path: Path, kafka_bootstrap: str, new_topic: NewTopic
) -> None:
    """100,000 streams opened (start, acked) and left idle cost at most 1.5 KB of RSS each.
    Then their one connection disconnects: 100,000 synthesized terminals (about 70 MB),
    which at a 16 MiB --max-pending-bytes do not fit at once; the peak RSS while they go
    out grows by at most the limit plus 8 MiB (the streams' freed memory is reused for
    their terminals). Every stream ends with exactly one `done` (disconnect)."""
    bs = kafka_bootstrap
    topic = await new_topic(partitions=3)
    n, chunk = 100_000, 5_000
    limit = 16 * MiB
    proc, port = await run_sidecar(tmp_path, bs, topic, "--max-pending-bytes", str(limit))
    pid = proc.pid  # type: ignore[attr-defined]
    try:
        c = await RawClient.connect(tmp_path / "s.sock")
        await c.send({"type": "hello", "acks": "all"}, full("warm", "up", "x"))
        await c.read_replies(1, timeout=60)
        base = status_bytes(pid, "VmRSS")
        for first in range(0, n, chunk):
            # Acked chunk by chunk: pending stays small, so what remains is the streams.
            await c.send(b"".join(line(start("t", f"m{i}")) for i in range(first, first + chunk)))
            replies = await c.read_replies(1 + first + chunk, timeout=120)
        assert all(r["type"] == "ack" for r in replies)
        await until_metric(port, "sidecar_open_streams", n)
        opened = status_bytes(pid, "VmRSS")
        per_stream = (opened - base) / n
        print(
            f"\nRSS base {base / MiB:.1f} MiB, {n} open {opened / MiB:.1f} MiB: "
            f"{per_stream:.0f} B per stream"
        )
        assert per_stream <= 1536
        reset_peak(pid)
        await c.aclose()  # 100k synthesized terminals at once
        await until_metric(port, "sidecar_open_streams", 0)
        await until_metric(port, "sidecar_pending_bytes", 0)
        peak = status_bytes(pid, "VmHWM")
        print(f"ending {n}: peak RSS {peak / MiB:.1f} MiB, +{(peak - opened) / MiB:.1f} MiB")
        assert peak - opened <= limit + 8 * MiB
    finally:
        proc.terminate()  # type: ignore[attr-defined]
        await proc.wait()  # type: ignore[attr-defined]
    records = await consume(bs, topic, 2 * n + 1, timeout=180)
    streams = check_streams(records)
    assert len(streams) == n + 1
    for i in range(n):
        recs = streams[("t", f"m{i}")]
        kinds = [(r.headers["type"], r.headers.get("terminal_reason")) for r in recs]
        assert kinds == [(b"start", None), (b"done", b"disconnect")], kinds


@pytest.mark.timeout(300)
async def test_rss_returns_near_its_baseline_after_a_flood(
    tmp_path: Path, kafka_bootstrap: str, new_topic: NewTopic
) -> None:
    """A flood (8 connections x 400 streams x 40 deltas of 1 KB, ~128 MB, twice the
    default limit pending at its height) then quiet: the process gives freed memory
    back (malloc_trim), and its RSS returns within 16 MiB of where it was before."""
    bs = kafka_bootstrap
    topic = await new_topic(partitions=3)
    proc, port = await run_sidecar(tmp_path, bs, topic)
    pid = proc.pid  # type: ignore[attr-defined]
    conns, streams, deltas = 8, 400, 40
    try:
        clients = [await RawClient.connect(tmp_path / "s.sock") for _ in range(conns)]

        for c in clients:
            await c.send({"type": "hello", "acks": "terminal"})

        async def agent(k: int, c: RawClient, n_streams: int, prefix: str = "m") -> None:
            ids = [f"{prefix}{k}-{i}" for i in range(n_streams)]
            await c.send(b"".join(line(start(f"t{k}", m)) for m in ids))
            for j in range(deltas):
                text = f"{j:04d}" + "x" * 1000
                await c.send(b"".join(line(text_delta(f"t{k}", m, text)) for m in ids))
            await c.send(b"".join(line(done(f"t{k}", m)) for m in ids))
            replies = await c.read_replies(n_streams, timeout=240)
            assert all(r["type"] == "ack" for r in replies)

        # Warm up with a small flood of the same shape, so the baseline has the code
        # paths, the producer's buffers and the caches a flood needs.
        await asyncio.gather(*(agent(k, c, 4, "warm") for k, c in enumerate(clients)))
        for c in clients:
            c.replies.clear()
        await until_metric(port, "sidecar_pending_bytes", 0)
        base = status_bytes(pid, "VmRSS")
        trims = await metric(port, "sidecar_memory_trims_total")
        await asyncio.gather(*(agent(k, c, streams) for k, c in enumerate(clients)))
        peak = status_bytes(pid, "VmHWM")
        await until_metric(port, "sidecar_pending_bytes", 0)
        await until_metric(port, "sidecar_memory_trims_total", trims + 1, timeout=30)
        # The trimmer checks once a second: the flood's drop may be trimmed while a few
        # MiB are still held, and their tail a check or two later.
        after = await rss_down_to(pid, base + 16 * MiB)
        print(
            f"\nflood: RSS base {base / MiB:.1f} MiB, peak {peak / MiB:.1f} MiB, "
            f"after {after / MiB:.1f} MiB"
        )
        assert after - base <= 16 * MiB
        for c in clients:
            await c.aclose()
    finally:
        proc.terminate()  # type: ignore[attr-defined]
        await proc.wait()  # type: ignore[attr-defined]
