"""`sidecar tail`: its core against a fake record source; the command on real Kafka."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from sidecar.cli import app
from sidecar.sink.kafka import ConsumedRecord
from sidecar.tools.commands import run_tail
from sidecar.tools.loadgen import LoadSpec, run_load
from tests.helpers import done, make_config, open_server, start, text_delta
from tests.tools.fakes import FakeTopic


def rec(p: int, off: int, value: dict[str, Any] | bytes, seq: int, **hs: str) -> ConsumedRecord:
    if isinstance(value, dict):
        ptm = value["parent_task_message"]
        task, kind, msg = ptm["task_id"], value["type"], ptm["id"]
        raw = orjson.dumps(value)
    else:
        task, kind, msg, raw = "t", "delta", "m", value
    headers = {"type": kind, "message_id": msg, "seq": str(seq), **hs}
    return ConsumedRecord(
        p, off, 1000 + off, task.encode(), raw, {k: v.encode() for k, v in headers.items()}
    )


def two_streams() -> list[ConsumedRecord]:
    return [
        rec(0, 0, start("a", "1"), 0),
        rec(0, 1, text_delta("a", "1", "hel"), 1),
        rec(0, 2, text_delta("a", "1", "lo"), 2),
        rec(0, 3, done("a", "1"), 3, terminal_reason="client"),
        rec(1, 0, text_delta("b", "2", "x"), 0),
        rec(1, 1, text_delta("b", "2", "y"), 1),
        rec(1, 2, done("b", "2"), 2, terminal_reason="disconnect"),
    ]


async def tail(topic: FakeTopic, **kw: Any) -> tuple[int, list[Any], str]:
    out, err = io.StringIO(), io.StringIO()
    code = await run_tail(topic, out=out, err=err, **kw)
    return code, [orjson.loads(x) for x in out.getvalue().splitlines()], err.getvalue()


async def test_prints_every_record_and_stops_at_the_end() -> None:
    code, lines, err = await tail(FakeTopic(two_streams()))
    assert (code, err) == (0, "")
    assert [(x["partition"], x["offset"]) for x in lines] == [(0, i) for i in range(4)] + [
        (1, i) for i in range(3)
    ]
    first = lines[0]
    assert first["key"] == "a" and first["timestamp_ms"] == 1000
    assert first["headers"] == {"type": "start", "message_id": "1", "seq": "0"}
    assert first["value"] == start("a", "1")


async def test_reassemble_prints_each_finished_stream() -> None:
    records = [*two_streams(), rec(1, 3, text_delta("c", "3", "open"), 0)]
    code, lines, err = await tail(FakeTopic(records), reassemble=True)
    assert code == 0
    assert [
        (x["task_id"], x["message_id"], x["terminal"], x["terminal_reason"]) for x in lines
    ] == [
        ("a", "1", "done", "client"),
        ("b", "2", "done", "disconnect"),
    ]
    assert [x["channels"] for x in lines] == [{"text": "hello"}, {"text": "xy"}]
    assert "1 streams have no terminal yet" in err


async def test_violations_go_to_stderr_and_exit_1() -> None:
    records = [*two_streams(), rec(1, 3, text_delta("b", "2", "late"), 3)]
    code, lines, err = await tail(FakeTopic(records), reassemble=True)
    assert code == 1 and len(lines) == 2
    assert "violation: record_after_terminal: b/2 at 1@3" in err


async def test_max_records_and_latest() -> None:
    code, lines, _ = await tail(FakeTopic(two_streams()), max_records=5)
    assert code == 0 and len(lines) == 5
    topic = FakeTopic(two_streams(), at_end=True)
    code, lines, _ = await tail(topic, from_start=False)
    assert (code, lines, topic.polls) == (0, [], 0)


async def test_the_end_is_found_by_position_across_offset_gaps() -> None:
    # Compacted or deleted records leave offsets that are never delivered.
    records = [rec(0, 0, start("a", "1"), 0), rec(0, 5, done("a", "1"), 1, terminal_reason="x")]
    topic = FakeTopic(records)
    topic.ends[0] = 9
    code, lines, _ = await tail(topic)
    assert code == 0 and len(lines) == 2


def stuck_poll(topic: FakeTopic) -> Any:
    """A poll that never gets to the last record (a broker that stopped answering)."""
    real = topic.poll

    async def poll(timeout_ms: int = 500, max_records: int = 10_000) -> list[ConsumedRecord]:
        if topic.next < len(topic.records) - 1:
            return await real(timeout_ms, min(max_records, len(topic.records) - 1 - topic.next))
        await asyncio.sleep(timeout_ms / 1000)
        return []

    return poll


async def test_timeouts() -> None:
    topic = FakeTopic(two_streams())
    code, lines, _ = await tail(topic, follow=True, timeout=0.05)
    assert code == 0 and len(lines) == 7 and topic.idle.is_set()
    stuck = FakeTopic([*two_streams(), rec(1, 3, text_delta("c", "3", "x"), 0)])
    stuck.poll = stuck_poll(stuck)  # type: ignore[method-assign]
    code, lines, err = await tail(stuck, timeout=0.05)
    assert code == 1 and len(lines) == 7
    assert "stopped by --timeout before the end, after 7 records" in err


async def test_no_partitions_and_odd_values() -> None:
    code, _, err = await tail(FakeTopic([]))
    assert code == 1 and "no partitions" in err
    code, lines, err = await tail(FakeTopic([rec(0, 0, b"\xffnot json", 0)]))
    assert lines[0]["value"] == "\ufffdnot json"
    assert code == 1 and "bad_record" in err


@pytest.mark.kafka
async def test_tail_reassembles_a_load_run_from_kafka(
    tmp_path: Path, kafka_bootstrap: str, new_topic: Any
) -> None:
    topic = await new_topic(partitions=3)
    config = make_config(tmp_path, bootstrap_servers=kafka_bootstrap, topic=topic)
    spec = LoadSpec(streams=12, deltas=40, connections=3, tasks=5)
    async with open_server(config, kafka=True):
        result = await run_load(config.socket, spec)
    assert result.ok, result.summary()
    args = ["tail", "--reassemble", "--bootstrap-servers", kafka_bootstrap, "--topic", topic]
    got = await asyncio.to_thread(CliRunner().invoke, app, [*args, "--timeout", "60"])
    assert got.exit_code == 0, got.output
    streams = [orjson.loads(x) for x in got.stdout.splitlines()]
    assert sorted((s["task_id"], s["message_id"]) for s in streams) == sorted(
        spec.key(i) for i in range(12)
    )
    assert {s["channels"]["text"] for s in streams} == {spec.expected_text()}
    assert {s["terminal_reason"] for s in streams} == {"client"}
    raw = await asyncio.to_thread(
        CliRunner().invoke, app, ["tail", *args[2:], "--max-records", "3"]
    )
    assert raw.exit_code == 0 and len(raw.stdout.splitlines()) == 3
