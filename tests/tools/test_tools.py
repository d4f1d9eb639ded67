"""Client-side tools: the reassembler's order checks, the client library and `send`."""

from __future__ import annotations

from pathlib import Path

import orjson

from sidecar.sink.memory import MemorySink
from sidecar.tools.client import open_client
from sidecar.tools.commands import _send
from sidecar.tools.loadgen import LoadSpec, run_load
from sidecar.tools.reassemble import Reassembler
from tests.helpers import done, full, make_config, open_server, start, text_delta


def h(kind: str, seq: int, reason: str | None = None) -> dict[str, bytes]:
    out = {"type": kind.encode(), "seq": str(seq).encode(), "message_id": b"m"}
    if reason:
        out["terminal_reason"] = reason.encode()
    return out


def test_reassembler_assembles_channels_and_flags_violations() -> None:
    r = Reassembler()
    assert r.feed(start("t", "m"), h("start", 0)) is None
    r.feed(text_delta("t", "m", "hel"), h("delta", 1))
    r.feed(text_delta("t", "m", "lo"), h("delta", 2))
    out = r.feed(done("t", "m"), h("done", 3, "client"))
    assert out is not None
    assert out.channels == {"text": "hello"}
    assert (out.terminal, out.reason, out.records, out.deltas) == ("done", "client", 4, 2)
    assert r.violations == []
    r.feed(text_delta("t", "m", "late"), h("delta", 4))
    r.feed(full("t", "x", "a"), {"type": b"full", "seq": b"2"})
    assert len(r.violations) == 2
    assert "after its terminal" in r.violations[0]
    assert "seq 2 where 0 was due" in r.violations[1]


async def test_client_and_send_command(tmp_path: Path, capsys: object) -> None:
    sink = MemorySink()
    config = make_config(tmp_path)
    async with open_server(config, sink):
        async with open_client(config.socket, client="test/1", acks="all") as c:
            s1 = await c.send(start("t", "m"))
            s2 = await c.send(done("t", "m"))
            assert (s1, s2) == (2, 3)  # the hello was line 1
            replies = await c.wait_replies({s1, s2}, timeout=10)
            assert {r["type"] for r in replies.values()} == {"ack"}
        lines = tmp_path / "in.ndjson"
        lines.write_bytes(
            b"".join(
                orjson.dumps(o) + b"\n"
                for o in (start("u", "m"), text_delta("u", "m", "x"), done("u", "m"))
            )
            + b"not json\n"
        )
        assert await _send(str(lines), config.socket, "terminal", 10) == 1  # one error reply
        out = capsys.readouterr().out  # type: ignore[attr-defined]
        printed = [orjson.loads(x) for x in out.splitlines()]
        assert {(r["type"], r["seq"]) for r in printed} == {("ack", 4), ("error", 5)}


async def test_loadgen_against_the_server(tmp_path: Path) -> None:
    sink = MemorySink()
    config = make_config(tmp_path)
    async with open_server(config, sink):
        result = await run_load(config.socket, LoadSpec(streams=20, deltas=30, connections=3))
    summary = result.summary()
    assert summary["deltas_sent"] == 600
    assert summary["errors"] == {}
    assert len(result.ack_latencies) == 20
    assert sum(r.deltas for _, _, r in sink.records) == 600
