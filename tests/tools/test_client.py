"""The agent client library against a fake sidecar on a real Unix socket."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from sidecar_client.client import expects_ack, open_client
from tests.helpers import done, full, start, text_delta
from tests.tools.fakes import fake_sidecar


async def test_no_hello_unless_asked(tmp_path: Path) -> None:
    async with fake_sidecar(tmp_path) as fake:
        async with open_client(fake.path) as c:
            assert await c.send(start("t", "m")) == 1
            assert await c.send(text_delta("t", "m", "hi")) == 2
            assert c.acks == "none"
            c.finish()
            assert await c.wait_closed(5)
        assert [f["type"] for f in fake.received()] == ["start", "delta"]
        assert fake.lines[0][0] == orjson.dumps(start("t", "m")) + b"\n"


async def test_hello_is_line_one_and_terminal_acked(tmp_path: Path) -> None:
    async with fake_sidecar(tmp_path) as fake:
        async with open_client(fake.path, client="agent/1", acks="terminal") as c:
            assert c.seq == 1
            assert await c.send(start("t", "m")) == 2
            assert await c.send(text_delta("t", "m", "a")) == 3
            seq = await c.send(done("t", "m"))
            assert seq == 4
            got = await c.wait_acks([seq], timeout=5)
            assert got == {4: {"type": "ack", "seq": 4, "partition": 0, "offset": 4}}
        assert fake.received()[0] == {"type": "hello", "client": "agent/1", "acks": "terminal"}


async def test_error_replies_settle_waits_and_are_handed_out_once(tmp_path: Path) -> None:
    async with fake_sidecar(tmp_path) as fake:
        async with open_client(fake.path, acks="all") as c:
            bad = await c.send({"type": "nonsense"})
            good = await c.send(start("t", "m"))
            got = await c.wait_acks([bad, good], timeout=5)
            assert got[bad]["type"] == "error"
            assert got[bad]["code"] == "invalid_frame"
            assert got[good]["type"] == "ack"
            assert c.errors == 1
            c.finish()
            assert [r async for r in c.replies()] == []  # both taken by wait_acks


async def test_replies_in_arrival_order_until_closed(tmp_path: Path) -> None:
    async with fake_sidecar(tmp_path) as fake:
        async with open_client(fake.path, acks="all") as c:
            seqs = await c.send_many(text_delta("t", "m", str(i)) for i in range(5))
            assert seqs == range(2, 7)
            # Taken first by a waiter: the others still come out of replies(), in order.
            assert list(await c.wait_acks([4], timeout=5)) == [4]
            c.finish()
            assert [r["seq"] async for r in c.replies()] == [2, 3, 5, 6]
            assert c.closed


async def test_wait_acks_stops_at_the_timeout(tmp_path: Path) -> None:
    async with fake_sidecar(tmp_path, ack=False) as fake:
        async with open_client(fake.path, acks="terminal") as c:
            seq = await c.send(done("t", "m"))
            assert await c.wait_acks([seq], timeout=0.02) == {}


async def test_wait_acks_stops_when_the_sidecar_closes(tmp_path: Path) -> None:
    async with fake_sidecar(tmp_path, ack=False, close_after=2) as fake:
        async with open_client(fake.path, acks="terminal") as c:
            seq = await c.send(full("t", "m", "all of it"))
            assert await c.wait_acks([seq], timeout=30) == {}  # returns at the close
            assert c.closed
            assert await c.wait_closed(0)


async def test_bytes_lines(tmp_path: Path) -> None:
    async with fake_sidecar(tmp_path) as fake:
        async with open_client(fake.path) as c:
            assert await c.send(orjson.dumps(start("t", "m")) + b"\n") == 1
            assert await c.send(orjson.dumps(done("t", "m"))) == 2
            with pytest.raises(ValueError, match="single line"):
                await c.send(b'{"type":"delta"}\n{"type":"done"}')
            assert c.seq == 2
            c.finish()
            await c.wait_closed(5)
        assert [f["type"] for f in fake.received()] == ["start", "done"]


async def test_a_hello_sent_as_line_one_sets_the_mode(tmp_path: Path) -> None:
    async with fake_sidecar(tmp_path) as fake:
        async with open_client(fake.path) as c:
            await c.send(b'{"type": "hello", "acks": "all"}')
            assert c.acks == "all"
            seq = await c.send(start("t", "m"))
            assert (await c.wait_acks([seq], timeout=5))[seq]["type"] == "ack"


async def test_bad_ack_mode_is_refused_before_connecting(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="acks"):
        async with open_client(tmp_path / "nothing.sock", acks="some"):  # type: ignore[arg-type]
            pass


async def test_no_sidecar_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        async with open_client(tmp_path / "nothing.sock"):
            pass


@pytest.mark.parametrize(
    ("acks", "line", "expected"),
    [
        ("none", done("t", "m"), False),
        ("terminal", done("t", "m"), True),
        ("terminal", orjson.dumps(full("t", "m", "x")), True),
        ("terminal", text_delta("t", "m", "x"), False),
        ("all", text_delta("t", "m", "x"), True),
        ("all", b"not json", True),  # answered, with an error
        ("all", b'{"type":"hello","acks":"all"}', False),
        ("terminal", b"[1, 2]", False),
    ],
)
def test_expects_ack(acks: str, line: dict[str, object] | bytes, expected: bool) -> None:
    assert expects_ack(acks, line) is expected  # type: ignore[arg-type]
