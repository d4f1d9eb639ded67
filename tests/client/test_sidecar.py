"""The reconnecting client (`sidecar_client.sidecar`) against the real server on the
in-memory sink: lazy connect, acks, rejections, reconnect, buffer bound, sync facade."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import orjson
import pytest

from sidecar.sink.memory import MemorySink
from sidecar_client import (
    Ack,
    BufferFull,
    ClientClosed,
    Delivery,
    FrameRejected,
    NotDelivered,
    SidecarClient,
    SyncSidecar,
    open_sidecar,
)
from sidecar_client.sidecar import default_socket_path
from tests.helpers import done, full, make_config, open_server, start, text_delta


async def test_lazy_connect_then_terminal_ack_settles_the_whole_stream(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    sink = MemorySink()
    async with open_server(config, sink):
        async with open_sidecar(config.socket, client="t/1") as sidecar:
            assert not sidecar.connected and sidecar.connects == 0  # nothing sent yet
            first = await sidecar.send(start("t", "m"))
            deltas = [await sidecar.send(text_delta("t", "m", f"{i} ")) for i in range(20)]
            last = await sidecar.send(done("t", "m"))
            ack = await last.wait(10)
            assert sidecar.connects == 1
            # Kafka keeps order: the terminal's ack settles everything before it.
            for d in (first, *deltas):
                assert d.done()
                assert d.result() == Ack(ack.partition, ack.offset, exact=False)
            assert ack.exact and str(ack) == f"{ack.partition}:{ack.offset}"
            (p, o, rec) = sink.records[-1]
            assert (p, o, rec.kind) == (ack.partition, ack.offset, "done")
    assert sidecar.undelivered == 0


async def test_acks_all_gives_each_frame_its_record(tmp_path: Path) -> None:
    config = make_config(tmp_path, flush_interval_ms=0)
    sink = MemorySink()
    async with open_server(config, sink), open_sidecar(config.socket, acks="all") as sidecar:
        ds = [await sidecar.send(text_delta("t", "m", c)) for c in "abc"]
        acks = [await d for d in ds]
        assert all(a.exact for a in acks)
        assert [o for _, o, _ in sink.records] == [a.offset for a in acks]


async def test_a_rejected_frame_is_reported_and_the_rest_goes_on(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    seen: list[Delivery] = []
    async with (
        open_server(config),
        open_sidecar(config.socket, on_undelivered=seen.append) as sidecar,
    ):
        await sidecar.send(start("t", "m"))
        again = await sidecar.send(start("t", "m"))  # stream_exists
        bad = await sidecar.send(b"not json")
        end = await sidecar.send(full("t", "m", "x"))
        with pytest.raises(FrameRejected) as exc:
            await again.wait(10)
        assert exc.value.code == "stream_exists"
        assert exc.value.delivery is again
        with pytest.raises(FrameRejected, match="invalid_json"):
            await bad.wait(10)
        assert (await end).exact
        late = await sidecar.send(text_delta("t", "m", "late"))  # after the terminal
        with pytest.raises(FrameRejected, match="stream_closed"):
            await late.wait(10)
    assert seen == [again, bad, late]
    assert sidecar.undelivered == 3


async def test_written_unacked_frames_fail_when_the_connection_breaks(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    sink = MemorySink()
    sink.hold.set()  # Kafka "down": nothing is acknowledged
    lost: list[Delivery] = []
    async with open_server(config, sink) as server:
        sidecar = SidecarClient(config.socket, on_undelivered=lost.append)
        ds = [await sidecar.send(text_delta("t", "m", str(i))) for i in range(5)]
        end = await sidecar.send(done("t", "m"))
        # The sidecar has every frame (the terminal flushed the window) but Kafka has none.
        await sink.wait_for(lambda s: any(r.kind == "done" for r in s.queue))
        for conn in list(server.hub.connections):
            assert conn.transport is not None
            conn.transport.abort()  # the connection breaks under the client
        with pytest.raises(NotDelivered, match="broke before Kafka acknowledged"):
            await end.wait(10)
        assert all(isinstance(d.error, NotDelivered) for d in ds)
        assert lost == [*ds, end]
        # The next frame reconnects.
        sink.release()
        again = await sidecar.send(done("t", "m2"))
        assert (await again.wait(10)).exact
        assert sidecar.connects == 2
        await sidecar.aclose()


async def test_send_nowait_past_the_buffer_raises_and_send_waits(tmp_path: Path) -> None:
    # No sidecar at all: frames queue while the client retries connecting.
    sock = tmp_path / "absent.sock"
    sidecar = SidecarClient(
        sock, high_water=1000, max_buffer_bytes=4000, connect_timeout=0.5, backoff_max=0.05
    )
    delta = text_delta("t", "m", "x" * 300)
    size = len(orjson.dumps(delta)) + 1
    fits = 4000 // size
    queued = [sidecar.send_nowait(delta) for _ in range(fits)]
    assert sidecar.buffered_bytes == fits * size
    with pytest.raises(BufferFull, match="max_buffer_bytes"):
        sidecar.send_nowait(delta)
    assert sidecar.buffered_bytes == fits * size  # the refused frame was not queued
    # `send` waits for room instead; the connect timeout then fails what was queued.
    waiting = asyncio.create_task(sidecar.send(delta))
    with pytest.raises(NotDelivered, match="cannot connect to the sidecar"):
        await queued[0].wait(10)
    assert all(isinstance(d.error, NotDelivered) for d in queued)
    assert sidecar.buffered_bytes < 1000
    late = await asyncio.wait_for(waiting, 10)  # room again: queued, and fails the same way
    with pytest.raises(NotDelivered):
        await late.wait(10)
    await sidecar.aclose()
    with pytest.raises(ClientClosed):
        await sidecar.send(delta)


def test_default_socket_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIDECAR_SOCKET", "/x/y.sock")
    assert default_socket_path() == Path("/x/y.sock")
    monkeypatch.delenv("SIDECAR_SOCKET")
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/7")
    assert default_socket_path() == Path("/run/user/7/sidecar.sock")
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert default_socket_path() == Path("/run/sidecar/sidecar.sock")


def test_acks_none_is_refused() -> None:
    with pytest.raises(ValueError, match="acks"):
        SidecarClient("/x", acks="none")


async def test_sync_facade_from_threads(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    sink = MemorySink()
    async with open_server(config, sink):

        def agent() -> list[Ack]:
            with SyncSidecar(config.socket, client="sync/1") as sidecar:
                sidecar.send(start("t", "s"))
                for i in range(10):
                    sidecar.send(text_delta("t", "s", str(i)))
                end = sidecar.send(done("t", "s"))
                ack = end.result(timeout=10)
                rejected = sidecar.send(text_delta("t", "s", "late"))
                with pytest.raises(FrameRejected):
                    rejected.result(timeout=10)
                return [ack]

        (ack,) = await asyncio.to_thread(agent)
        assert ack.exact
        texts = [
            orjson.loads(r.value)["delta"]["text_delta"]
            for _, _, r in sink.records
            if r.kind == "delta"
        ]
        assert "".join(texts) == "0123456789"  # in order, whatever the merging
    # close() stopped the client's loop and joined its thread.
    assert not any(t.name == "sidecar-client" for t in threading.enumerate())
