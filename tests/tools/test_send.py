"""`sidecar send`: its async core against a fake sidecar, the command itself, and one run
against the real server (memory sink)."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import orjson
from typer.testing import CliRunner

from sidecar.cli import app
from sidecar.sink.memory import MemorySink
from sidecar.tools.commands import run_send
from sidecar_client.reassemble import Reassembler
from tests.helpers import done, make_config, open_server, start, text_delta
from tests.tools.fakes import consumed, fake_sidecar


def ndjson(*objs: dict[str, Any] | bytes) -> bytes:
    return b"".join(o if isinstance(o, bytes) else orjson.dumps(o) + b"\n" for o in objs)


def stream(task: str = "t", msg: str = "m", pieces: int = 3) -> bytes:
    deltas = [text_delta(task, msg, f"{i} ") for i in range(pieces)]
    return ndjson(start(task, msg), *deltas, done(task, msg))


async def send(data: bytes, socket: Path, **kw: Any) -> tuple[int, list[dict[str, Any]], str]:
    out, err = io.StringIO(), io.StringIO()
    code = await run_send(io.BytesIO(data), socket, out=out, err=err, **kw)
    return code, [orjson.loads(x) for x in out.getvalue().splitlines()], err.getvalue()


async def test_terminal_acks_are_printed_and_awaited(tmp_path: Path) -> None:
    async with fake_sidecar(tmp_path) as fake:
        code, replies, err = await send(stream(), fake.path, acks="terminal")
    assert (code, err) == (0, "")
    assert replies == [{"type": "ack", "seq": 6, "partition": 0, "offset": 6}]
    sent = fake.received()
    assert (sent[0]["type"], sent[0]["acks"], sent[0].get("client")) == ("hello", "terminal", None)
    assert [f["type"] for f in sent[1:]] == ["start", "delta", "delta", "delta", "done"]


async def test_order_blank_lines_and_a_last_line_without_newline(tmp_path: Path) -> None:
    data = ndjson(start("t", "m"), b"\n   \n", text_delta("t", "m", "x")) + orjson.dumps(
        done("t", "m")
    )
    async with fake_sidecar(tmp_path) as fake:
        code, replies, _ = await send(data, fake.path, acks="all")
    assert code == 0
    assert sorted(r["seq"] for r in replies) == [2, 3, 4]
    assert [f["type"] for f in fake.received()[1:]] == ["start", "delta", "done"]


async def test_an_error_reply_means_exit_1(tmp_path: Path) -> None:
    async with fake_sidecar(tmp_path) as fake:
        code, replies, _ = await send(stream() + b"not json\n", fake.path, acks="terminal")
    assert code == 1
    assert [(r["type"], r["seq"]) for r in replies] == [("ack", 6), ("error", 7)]


async def test_without_acks_it_ends_when_the_sidecar_closes(tmp_path: Path) -> None:
    async with fake_sidecar(tmp_path) as fake:
        code, replies, _ = await send(stream(pieces=50), fake.path, wait=30)
        assert fake.closed.is_set()
    assert (code, replies) == (0, [])
    assert len(fake.received()) == 52


async def test_a_missing_ack_is_an_error_after_wait(tmp_path: Path) -> None:
    async with fake_sidecar(tmp_path, ack=False) as fake:
        code, replies, err = await send(stream(), fake.path, acks="terminal", wait=0.02)
    assert (code, replies) == (1, [])
    assert "no reply within 0.02s for 1 lines (seq 6)" in err


async def test_a_sidecar_closing_early(tmp_path: Path) -> None:
    async with fake_sidecar(tmp_path, close_after=2) as fake:
        code, _, err = await send(stream(), fake.path, acks="terminal")
    assert code == 1
    assert "no reply before the sidecar closed the connection for 1 lines (seq 6)" in err


async def test_a_line_longer_than_a_read(tmp_path: Path) -> None:
    long = text_delta("t", "m", "x" * 300_000)  # several 64 KiB reads
    data = ndjson(start("t", "m"), long, long) + orjson.dumps(done("t", "m"))
    async with fake_sidecar(tmp_path) as fake:
        code, replies, _ = await send(data, fake.path, acks="terminal")
    assert code == 0 and [r["seq"] for r in replies] == [5]
    assert fake.received()[2] == long and fake.received()[3] == long


async def test_a_hello_in_the_input_sets_the_ack_mode(tmp_path: Path) -> None:
    data = ndjson({"type": "hello", "acks": "terminal"}) + stream()
    async with fake_sidecar(tmp_path) as fake:
        code, replies, _ = await send(data, fake.path)
    assert code == 0
    assert [r["seq"] for r in replies] == [6]


async def test_no_sidecar(tmp_path: Path) -> None:
    code, _, err = await send(stream(), tmp_path / "none.sock")
    assert code == 1 and "none.sock" in err


async def test_large_input_streams_through_in_chunks(tmp_path: Path) -> None:
    n = 20_000  # ~1.6 MB: many read chunks and many socket drains
    async with fake_sidecar(tmp_path) as fake:
        code, replies, _ = await send(stream(pieces=n), fake.path, acks="terminal", wait=30)
    assert code == 0 and replies[0]["seq"] == n + 3
    assert len(fake.lines[0]) == n + 3


async def test_the_command(tmp_path: Path) -> None:
    """Through typer, in a thread: the command runs its own event loop."""
    file = tmp_path / "in.ndjson"
    file.write_bytes(stream())
    runner = CliRunner()
    async with fake_sidecar(tmp_path) as fake:
        env = {"SIDECAR_SOCKET": str(fake.path)}
        ok = await asyncio.to_thread(
            runner.invoke, app, ["send", str(file), "--acks", "terminal"], env=env
        )
        missing = await asyncio.to_thread(runner.invoke, app, ["send", str(tmp_path / "no")])
        piped = await asyncio.to_thread(
            runner.invoke, app, ["send", "-", "--socket", str(fake.path)], input=b"nope\n"
        )
    assert ok.exit_code == 0, ok.output
    assert orjson.loads(ok.stdout) == {"type": "ack", "seq": 6, "partition": 0, "offset": 6}
    assert missing.exit_code == 2 and "cannot read" in missing.output
    assert piped.exit_code == 1
    assert orjson.loads(piped.stdout)["code"] == "invalid_json"


async def test_against_the_real_server(tmp_path: Path) -> None:
    sink = MemorySink()
    data = stream("a", "1", 30) + stream("b", "2", 5) + ndjson(start("a", "1"))
    async with open_server(make_config(tmp_path), sink) as server:
        code, replies, _ = await send(data, server.config.socket, acks="terminal")
    assert code == 1  # the second start of a/1: stream_closed
    by_type = sorted((r["type"], r["seq"]) for r in replies)
    assert by_type == [("ack", 33), ("ack", 40), ("error", 41)]
    r = Reassembler()
    finished = [s for c in consumed(sink) if (s := r.feed(c.value, c.headers)) is not None]
    assert r.violations == []
    texts = {s.key: s.channels["text"] for s in finished}
    assert texts == {
        ("a", "1"): "".join(f"{i} " for i in range(30)),
        ("b", "2"): "".join(f"{i} " for i in range(5)),
    }
