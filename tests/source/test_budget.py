"""The memory budget through a real socket, on the in-memory sink: terminals of a burst
of disconnects wait for room, partial lines count and engage backpressure without
deadlocking, and /metrics shows every kind."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson

from sidecar.budget import KINDS
from sidecar.model import Record
from sidecar.sink.memory import MemorySink
from tests.helpers import RawClient, full, make_config, open_server, start, watch_pause

HELD = "sidecar_held_bytes"


async def test_a_burst_of_disconnect_terminals_waits_for_room(tmp_path: Path) -> None:
    """3,000 open streams, Kafka away, one disconnect: the synthesized terminals go out
    only while pending bytes are under the limit, the rest wait (closed), and once Kafka
    is back every stream gets exactly one terminal and reading resumes."""
    limit = 1 << 20
    n = 3000
    sink = MemorySink(max_pending_bytes=limit)
    peak = [0]
    submit = sink.submit

    def watched(record: Record) -> None:
        submit(record)
        peak[0] = max(peak[0], sink.pending_bytes)

    sink.submit = watched  # type: ignore[method-assign]
    async with open_server(make_config(tmp_path), sink) as server:
        c = await RawClient.connect(server.config.socket)
        await c.send(*(start("t", f"m{i}") for i in range(n)))
        await sink.wait_for(lambda s: len(s.records) == n)
        sink.hold.set()  # Kafka away: nothing is acknowledged
        await c.aclose()
        await sink.wait_for(lambda s: server.table.ending_count > 0)
        waiting = server.table.ending_count
        assert 0 < waiting < n  # some went out, the rest wait
        assert server.table.open_count == waiting  # not ended yet: no terminal so far
        assert sink.paused and server.hub.paused
        # Bounded: the limit plus the one terminal that passed it.
        assert limit < peak[0] < limit + 2048
        held = {k: server.metrics.sample(HELD, kind=k) for k in KINDS}
        assert held["open_streams"] > 0 and held["pending_records"] == sink.pending_bytes
        sink.release()
        await sink.wait_for(
            lambda s: s.metrics.produced["done"] == n and not server.hub.paused, timeout=30
        )
        assert peak[0] < limit + 2048
        streams = sink.by_stream()
        assert len(streams) == n
        for records in streams.values():
            assert [(r.kind, r.terminal_reason, r.stream_seq) for r in records] == [
                ("start", None, 0),
                ("done", "disconnect", 1),
            ]
        assert server.table.open_count == 0
        assert server.metrics.sample(HELD, kind="open_streams") == 0
        # Reading resumed: a new client is served.
        d = await RawClient.connect(server.config.socket)
        await d.send({"type": "hello", "acks": "terminal"}, full("t", "after", "x"))
        assert (await d.read_replies(1))[0]["type"] == "ack"
        await d.aclose()


async def test_partial_lines_count_and_their_writers_finish_them_when_paused(
    tmp_path: Path,
) -> None:
    """Kafka away with about 77 KB of records pending under a 128 KiB limit; then three
    connections each hold 20 KB of an unfinished line: together past the limit, so reads
    pause. A paused connection could never finish its line, so the three read on until
    their lines are complete (no deadlock), and no further: what came after a line's end
    waits for reads to resume; a fourth connection, at a line boundary, waits too. Kafka
    back, every line is answered, in order."""
    limit = 128 << 10
    sink = MemorySink(max_pending_bytes=limit)
    async with open_server(make_config(tmp_path), sink) as server:
        paused = watch_pause(server)
        hello = {"type": "hello", "acks": "all"}
        writers = [await RawClient.connect(server.config.socket) for _ in range(3)]
        idle = await RawClient.connect(server.config.socket)
        await idle.send(hello)
        sink.hold.set()  # Kafka away: what is submitted stays pending
        await idle.send(*(full("t", f"held{i}", "h" * 25_000) for i in range(3)))
        await sink.wait_for(lambda s: s.pending_records == 3)
        # Two half lines of 20 KB fit under the limit with these records, three do not.
        assert not sink.paused and limit - 3 * 20_000 < sink.pending_bytes <= limit - 2 * 20_000
        lines = [orjson.dumps(full("t", f"m{i}", "x" * 40_000)) + b"\n" for i in range(3)]
        for w, raw in zip(writers, lines, strict=True):
            await w.send(hello, raw[:20_000])
        await asyncio.wait_for(paused.wait(), 10)
        assert server.metrics.sample(HELD, kind="partial_lines") >= 3 * 20_000 - 3 * 64
        await idle.send(full("t", "idle", "y"))  # not read while paused
        for i, (w, raw) in enumerate(zip(writers, lines, strict=True)):
            await w.send(raw[20_000:] + orjson.dumps(full("t", f"next{i}", "z")) + b"\n")
        # Each writer's line was read whole (finishing it under the pause), not its next.
        await sink.wait_for(lambda s: s.pending_records == 6)
        assert server.intake.budget.partial_lines == 0  # none charged; the next lines wait
        assert server.sink.paused  # still paused
        sink.release()
        for w in writers:
            replies = await w.read_replies(2, timeout=10)
            assert [(r["type"], r["seq"]) for r in replies] == [("ack", 2), ("ack", 3)]
        replies = await idle.read_replies(4, timeout=10)
        assert [(r["type"], r["seq"]) for r in replies] == [("ack", n) for n in (2, 3, 4, 5)]
        assert server.metrics.sample(HELD, kind="partial_lines") == 0
        assert not sink.paused
        for c in (*writers, idle):
            await c.aclose()


async def test_unfinished_lines_past_half_the_limit_are_skipped_so_no_stall(
    tmp_path: Path,
) -> None:
    """Half lines of clients that stopped writing would never go: together they may hold
    at most half of --max-pending-bytes, below where paused reads resume. The line that
    grows past that share is skipped (`frame_too_large`) and its connection goes on; the
    other connections are served throughout."""
    limit = 128 << 10
    sink = MemorySink(max_pending_bytes=limit)
    async with open_server(make_config(tmp_path), sink) as server:
        hello = {"type": "hello", "acks": "all"}
        stalled = [await RawClient.connect(server.config.socket) for _ in range(3)]
        for c in stalled[:2]:
            await c.send(hello, b'{"type":"full"' + b" " * 30_000)  # never finished
        async with asyncio.timeout(10):
            while server.intake.budget.partial_lines < 2 * 30_000:  # noqa: ASYNC110
                await asyncio.sleep(0.01)  # the server's read of a write: no event to await
        third = stalled[2]
        await third.send(hello, b'{"type":"full"' + b" " * 30_000)  # past 64 KiB together
        (reply,) = await third.read_replies(1)
        assert (reply["type"], reply["code"], reply["seq"]) == ("error", "frame_too_large", 2)
        assert "unfinished lines fill their share" in reply["message"]
        assert server.metrics.sample(HELD, kind="partial_lines") <= limit // 2
        # The skipped line's rest is dropped up to its newline; the next line is served.
        await third.send(b' "ignored"}\n', full("t", "third", "z"))
        reply = (await third.read_replies(2))[1]
        assert (reply["type"], reply["seq"]) == ("ack", 3)
        # Another client is not held up by the two stalled ones.
        other = await RawClient.connect(server.config.socket)
        await other.send(hello, full("t", "other", "y"))
        assert (await other.read_replies(1))[0]["type"] == "ack"
        assert not sink.paused
        for c in (*stalled, other):
            await c.aclose()


async def test_a_partial_line_dropped_at_disconnect_is_uncharged(tmp_path: Path) -> None:
    async with open_server(make_config(tmp_path)) as server:
        c = await RawClient.connect(server.config.socket)
        await c.send(b'{"type":"start","parent_')
        async with asyncio.timeout(10):
            while server.intake.budget.partial_lines == 0:  # noqa: ASYNC110
                await asyncio.sleep(0.01)  # the server's read of a write: no event to await
        assert server.metrics.sample(HELD, kind="partial_lines") == 24
        await c.aclose()
        async with asyncio.timeout(10):
            while server.hub.connections:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        assert server.intake.budget.partial_lines == 0


async def test_open_streams_past_their_bound_pause_reads_until_streams_end(
    tmp_path: Path,
) -> None:
    """100 streams opened and left open against --max-open-stream-bytes of 64 KiB (about
    64 agentex streams): reads pause, so the next line waits; the idle timeout ends the
    streams (nothing else can while no frame is read), reads resume, the line is served."""
    sink = MemorySink()
    config = make_config(tmp_path, max_open_stream_bytes=64 << 10, stream_idle_timeout=1.0)
    async with open_server(config, sink) as server:
        paused = watch_pause(server)
        c = await RawClient.connect(server.config.socket)
        await c.send({"type": "hello", "acks": "all"}, *(start("t", f"m{i}") for i in range(100)))
        await c.read_replies(100)
        await asyncio.wait_for(paused.wait(), 10)
        assert server.sink.paused
        assert server.metrics.sample(HELD, kind="open_streams") > 64 << 10
        await c.send(full("t", "after", "x"))
        (reply,) = (await c.read_replies(101, timeout=20))[100:]
        assert reply["type"] == "ack"
        kinds = [(r.message_id, r.terminal_reason) for _, _, r in sink.records]
        ended = [i for i, (_, why) in enumerate(kinds) if why == "idle_timeout"]
        assert len(ended) == 100
        assert kinds.index(("after", "client")) > max(ended)
        assert not server.hub.paused
        await c.aclose()
