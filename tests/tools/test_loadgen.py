"""The load generator and `sidecar bench` against the real server (memory sink)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
from typer.testing import CliRunner

from sidecar.cli import app
from sidecar.sink.memory import MemorySink
from sidecar.tools.loadgen import LoadResult, LoadSpec, percentile, run_load
from sidecar_client.reassemble import Reassembler
from tests.helpers import make_config, open_server
from tests.tools.fakes import consumed


async def test_every_stream_arrives_whole_and_is_timed(tmp_path: Path) -> None:
    sink = MemorySink()
    spec = LoadSpec(streams=12, deltas=25, delta_chars=40, connections=5, tasks=4)
    async with open_server(make_config(tmp_path), sink) as server:
        result = await run_load(server.config.socket, spec)
    s = result.summary()
    assert result.ok
    assert (s["deltas_sent"], s["deltas_accepted"], s["terminals_acked"]) == (300, 300, 12)
    assert s["terminals_missing"] == 0 and s["errors"] == {}
    assert len(result.ack_latencies) == 12 and s["terminal_ack_ms_p99"] is not None
    assert set(result.first_delta_sent) == {spec.key(i) for i in range(12)}
    assert len({k[0] for k in result.first_delta_sent}) == 4
    r = Reassembler()
    finished = [x for c in consumed(sink) if (x := r.feed(c.value, c.headers)) is not None]
    assert r.violations == []
    assert len(finished) == 12
    assert {x.channels["text"] for x in finished} == {spec.expected_text()}
    assert len(spec.expected_text()) == 25 * 40


async def test_ack_modes(tmp_path: Path) -> None:
    async with open_server(make_config(tmp_path)) as server:
        none = await run_load(server.config.socket, LoadSpec(4, 10, acks="none", connections=2))
        every = await run_load(server.config.socket, LoadSpec(4, 10, acks="all", rate=10_000))
    assert none.ok and none.ack_latencies == [] and none.summary()["terminals_missing"] == 0
    assert every.ok and every.terminals_acked == 4 and every.deltas_accepted == 40


async def test_errors_are_counted(tmp_path: Path) -> None:
    spec = LoadSpec(streams=3, deltas=5, connections=1)
    async with open_server(make_config(tmp_path)) as server:
        assert (await run_load(server.config.socket, spec)).ok
        again = await run_load(server.config.socket, spec)  # same ids: closed streams
    assert not again.ok
    assert again.errors == {"stream_closed": 21}  # 3 starts, 15 deltas, 3 dones
    assert (again.deltas_accepted, again.terminal_errors, again.terminals_missing) == (0, 3, 0)
    assert "stream_closed 21" in again.report()


def test_percentile_and_report() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 99), percentile(values, 100)) == (
        50.0,
        99.0,
        100.0,
    )
    assert percentile([], 50) is None and percentile([3.0], 1) == 3.0
    report = LoadResult(LoadSpec(), seconds=2.0, deltas_sent=20_000, terminals_acked=100)
    text = report.report()
    assert "100 streams x 200 deltas of 8 chars over 4 connections" in text
    assert "deltas accepted  20000 (10000/s)" in text and "errors           none" in text


async def test_the_command(tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["bench", "--streams", "6", "--deltas", "20", "--connections", "2", "--no-uvloop"]
    async with open_server(make_config(tmp_path)) as server:
        sock = str(server.config.socket)
        as_json = await asyncio.to_thread(runner.invoke, app, [*args, "--json", "--socket", sock])
        human = await asyncio.to_thread(runner.invoke, app, args, env={"SIDECAR_SOCKET": sock})
    assert as_json.exit_code == 0, as_json.output
    summary = orjson.loads(as_json.stdout)
    assert summary["deltas_accepted"] == 120 and summary["terminals_acked"] == 6
    assert human.exit_code == 0 and "terminal acks    p50" in human.stdout
    missing = await asyncio.to_thread(
        runner.invoke, app, ["bench", "--socket", str(tmp_path / "none.sock")]
    )
    assert missing.exit_code == 1 and "none.sock" in missing.output
