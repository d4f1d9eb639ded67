"""The server end to end over a real Unix socket, with the in-memory sink (hermetic)."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
from pathlib import Path

import orjson
import pytest

from sidecar.sink.memory import MemorySink
from sidecar.source.listener import SocketInUseError, claim_socket_path
from tests.helpers import RawClient, done, make_config, open_server, start, text_delta, watch_pause


def _texts(sink: MemorySink, key: tuple[str, str]) -> list[str]:
    out = []
    for r in sink.by_stream().get(key, []):
        if r.kind == "delta":
            out.append(orjson.loads(r.value)["delta"]["text_delta"])
    return out


async def test_stream_round_trip_in_order(tmp_path: Path) -> None:
    sink = MemorySink()
    async with open_server(make_config(tmp_path), sink) as server:
        c = await RawClient.connect(server.config.socket)
        await c.send(start("t1", "m1"))
        await c.send(*[text_delta("t1", "m1", f"{i},") for i in range(50)])
        await c.send(done("t1", "m1", index=3))
        await sink.wait_for(lambda s: any(r.kind == "done" for _, _, r in s.records))
        recs = sink.by_stream()[("t1", "m1")]
        assert recs[0].kind == "start"
        assert recs[-1].kind == "done" and recs[-1].terminal_reason == "client"
        assert orjson.loads(recs[-1].value)["index"] == 3
        assert [r.stream_seq for r in recs] == list(range(len(recs)))
        assert "".join(_texts(sink, ("t1", "m1"))) == "".join(f"{i}," for i in range(50))
        await c.aclose()


async def test_bad_lines_get_errors_and_disturb_nothing(tmp_path: Path) -> None:
    sink = MemorySink()
    config = make_config(tmp_path, max_frame_bytes=1024)
    async with open_server(config, sink) as server:
        a = await RawClient.connect(server.config.socket)
        b = await RawClient.connect(server.config.socket)
        await b.send({"type": "hello", "acks": "all"}, start("tb", "mb"))
        await a.send(
            start("ta", "ma"),
            b"{not json\n",
            b"[1, 2]\n",
            b"\xff\xfe\n",
            b'{"type": "delta"}\n',
            b"x" * 5000 + b"\n",
            start("ta", "ma"),
            text_delta("ta", "ma", "ok"),
            done("ta", "ma"),
            text_delta("ta", "ma", "late"),
        )
        errors = await a.read_replies(7)
        assert [(e["seq"], e["code"]) for e in errors] == [
            (2, "invalid_json"),
            (3, "invalid_json"),
            (4, "invalid_json"),
            (5, "invalid_frame"),
            (6, "frame_too_large"),
            (7, "stream_exists"),
            (10, "stream_closed"),
        ]
        assert all(e["type"] == "error" and e["message"] for e in errors)
        await b.send(text_delta("tb", "mb", "fine"), done("tb", "mb"))
        acks = await b.read_replies(3)
        assert [r["type"] for r in acks] == ["ack", "ack", "ack"]
        assert [r["seq"] for r in acks] == [2, 3, 4]
        kinds = [r.kind for r in sink.by_stream()[("ta", "ma")]]
        assert kinds == ["start", "delta", "done"]
        await a.aclose()
        await b.aclose()


async def test_acks_carry_partition_and_offset(tmp_path: Path) -> None:
    sink = MemorySink()
    async with open_server(make_config(tmp_path, flush_interval_ms=60_000), sink) as server:
        c = await RawClient.connect(server.config.socket)
        await c.send({"type": "hello", "client": "t/1", "acks": "all"})
        await c.send(
            start("t", "m"), *(text_delta("t", "m", "x") for _ in range(4)), done("t", "m")
        )
        acks = await c.read_replies(6)
        by_seq = {a["seq"]: a for a in acks}
        assert sorted(by_seq) == [2, 3, 4, 5, 6, 7]
        # Deltas 2..4 waited in one window and were merged: one record, one offset.
        merged = {by_seq[s]["offset"] for s in (5, 6)}
        assert len(merged) == 1
        offsets = [by_seq[s]["offset"] for s in (2, 3, 5, 7)]
        assert offsets == sorted(offsets) and len(set(offsets)) == 4
        assert len({a["partition"] for a in acks}) == 1
        await c.aclose()


async def test_terminal_acks_only(tmp_path: Path) -> None:
    sink = MemorySink()
    async with open_server(make_config(tmp_path), sink) as server:
        c = await RawClient.connect(server.config.socket)
        await c.send({"type": "hello", "acks": "terminal"}, start("t", "m"))
        await c.send(text_delta("t", "m", "a"), done("t", "m"))
        (ack,) = await c.read_replies(1)
        assert ack["type"] == "ack" and ack["seq"] == 4
        await c.aclose()


async def test_disconnect_ends_open_streams(tmp_path: Path) -> None:
    sink = MemorySink()
    async with open_server(make_config(tmp_path), sink) as server:
        c = await RawClient.connect(server.config.socket)
        await c.send(start("t", "m1"), text_delta("t", "m2", "hi", index=2))
        await c.send(b'{"type": "delta", "parent_task_')  # half a line, then gone
        await c.aclose()
        await sink.wait_for(lambda s: sum(r.kind == "done" for _, _, r in s.records) == 2)
        for key in [("t", "m1"), ("t", "m2")]:
            last = sink.by_stream()[key][-1]
            assert last.kind == "done" and last.terminal_reason == "disconnect"
        body = orjson.loads(sink.by_stream()[("t", "m2")][-1].value)
        assert body["index"] == 2 and body["parent_task_message"]["id"] == "m2"
        assert server.table.open_count == 0


async def test_keep_on_disconnect_lets_another_connection_finish(tmp_path: Path) -> None:
    sink = MemorySink()
    async with open_server(make_config(tmp_path, on_disconnect="keep"), sink) as server:
        c = await RawClient.connect(server.config.socket)
        await c.send(start("t", "m"), text_delta("t", "m", "a"))
        await c.aclose()
        d = await RawClient.connect(server.config.socket)
        await d.send(
            {"type": "hello", "acks": "terminal"}, text_delta("t", "m", "b"), done("t", "m")
        )
        (ack,) = await d.read_replies(1)
        assert ack["seq"] == 3
        recs = sink.by_stream()[("t", "m")]
        assert [r.terminal_reason for r in recs if r.kind == "done"] == ["client"]
        await d.aclose()


async def test_client_that_never_reads_cannot_stall_ingest(tmp_path: Path) -> None:
    sink = MemorySink()
    config = make_config(tmp_path, max_reply_bytes=4096)
    async with open_server(config, sink) as server:
        lazy = await RawClient.connect(server.config.socket)
        # Thousands of error replies that the client never reads.
        lazy.writer.write(b"nope\n" * 20_000)
        lazy.writer.write(line_of(start("lazy", "m")))
        await lazy.writer.drain()
        await sink.wait_for(lambda s: ("lazy", "m") in s.by_stream())
        assert server.metrics.sample("sidecar_replies_dropped_total") > 0
        busy = await RawClient.connect(server.config.socket)
        await busy.send({"type": "hello", "acks": "terminal"}, start("b", "m"), done("b", "m"))
        (ack,) = await busy.read_replies(1)
        assert ack["type"] == "ack"
        await busy.aclose()
        await lazy.aclose()


def line_of(obj: dict[str, object]) -> bytes:
    return orjson.dumps(obj) + b"\n"


async def test_backpressure_pauses_reading_until_kafka_catches_up(tmp_path: Path) -> None:
    limit = 64 * 1024
    sink = MemorySink(max_pending_bytes=limit)
    sink.hold.set()  # Kafka "down": nothing is acknowledged
    async with open_server(make_config(tmp_path, flush_interval_ms=0), sink) as server:
        paused = watch_pause(server)
        c = await RawClient.connect(server.config.socket)
        n = 2000  # ~5 MB, far past the limit
        c.writer.write(b"".join(line_of(text_delta("t", f"m{i}", "x" * 2500)) for i in range(n)))
        await asyncio.wait_for(paused.wait(), 10)
        assert server.hub.paused
        # Bounded: reading stopped within one socket read of the limit.
        assert limit < sink.pending_bytes < limit + 512 * 1024
        assert sink.pending_records < n
        # The paused time is counted while the pause lasts (on the loop's clock).
        before = server.metrics.sample(PAUSED_SECONDS)
        await asyncio.sleep(0.2)
        assert server.hub.paused  # still: nothing was acknowledged
        during = server.metrics.sample(PAUSED_SECONDS)
        assert during - before >= 0.19
        sink.release()
        await c.writer.drain()
        await sink.wait_for(lambda s: len(s.records) == n, timeout=30)
        assert not sink.paused  # reading resumed (the hub follows the sink)
        # ... and no longer once reads resumed.
        after = server.metrics.sample(PAUSED_SECONDS)
        assert after >= during
        await asyncio.sleep(0.1)
        assert server.metrics.sample(PAUSED_SECONDS) == after
        await c.aclose()


PAUSED_SECONDS = "sidecar_backpressure_seconds_total"


async def test_shutdown_ends_streams_and_removes_socket(tmp_path: Path) -> None:
    sink = MemorySink()
    async with open_server(make_config(tmp_path), sink) as server:
        c = await RawClient.connect(server.config.socket)
        await c.send({"type": "hello", "acks": "all"}, start("t", "m"))
        await c.read_replies(1)
        code = await server.shutdown()
        assert code == 0
        recs = sink.by_stream()[("t", "m")]
        assert recs[-1].kind == "done" and recs[-1].terminal_reason == "shutdown"
        assert not server.config.socket.exists()


async def test_shutdown_deadline_with_kafka_down_exits_1(tmp_path: Path) -> None:
    sink = MemorySink()
    sink.hold.set()
    async with open_server(make_config(tmp_path, shutdown_timeout=0.2), sink) as server:
        c = await RawClient.connect(server.config.socket)
        await c.send({"type": "hello", "acks": "terminal"}, start("t", "m"), done("t", "m"))
        await sink.wait_for(lambda s: s.pending_records == 2)
        assert await server.shutdown() == 1
        await c.aclose()


async def test_lines_after_drain_get_shutting_down(tmp_path: Path) -> None:
    sink = MemorySink()
    sink.hold.set()
    async with open_server(make_config(tmp_path, shutdown_timeout=5), sink) as server:
        c = await RawClient.connect(server.config.socket)
        await c.send(start("t", "m"))
        await sink.wait_for(lambda s: s.pending_records == 1)
        stopping = asyncio.create_task(server.shutdown())
        await c.send(start("t", "m2"))
        (err,) = await c.read_replies(1)
        assert err["code"] == "shutting_down" and err["seq"] == 2
        sink.release()
        assert await stopping == 0


async def test_socket_mode_default_0660(tmp_path: Path) -> None:
    async with open_server(make_config(tmp_path)) as server:
        mode = stat.S_IMODE(os.stat(server.config.socket).st_mode)
        assert mode == 0o660


async def test_stale_socket_is_replaced_and_live_one_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # bound, never listening: what a killed process leaves
    assert path.exists()
    async with open_server(make_config(tmp_path, socket=path)):
        with pytest.raises(SocketInUseError, match="another process"):
            claim_socket_path(path)
    not_socket = tmp_path / "file"
    not_socket.write_text("x")
    with pytest.raises(SocketInUseError, match="not a socket"):
        claim_socket_path(not_socket)


async def test_half_close_still_gets_every_owed_ack(tmp_path: Path) -> None:
    sink = MemorySink()
    sink.hold.set()  # acks cannot come before the client has finished writing
    async with open_server(make_config(tmp_path), sink) as server:
        c = await RawClient.connect(server.config.socket)
        await c.send({"type": "hello", "acks": "terminal"}, start("t", "a"), done("t", "a"))
        await c.send(start("t", "open"))
        c.writer.write_eof()
        await sink.wait_for(lambda s: s.pending_records == 4)  # incl. the synthesized done
        sink.release()
        (ack,) = await c.read_replies(1)
        assert ack["type"] == "ack"
        assert ack["seq"] == 3
        assert await c.reader.read() == b""  # then the sidecar closes
        last = sink.by_stream()[("t", "open")][-1]
        assert last.terminal_reason == "disconnect"
