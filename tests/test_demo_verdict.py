"""The demo's verdict catches what it claims to check, on records built by hand."""

from __future__ import annotations

import orjson
import pytest

from demo.agents import StreamRow
from demo.verdict import ReadBack, judge, percentile
from sidecar.sink.kafka import ConsumedRecord


def rec(
    offset: int, kind: str, seq: int, text: str | None = None, ts: int = 1000
) -> ConsumedRecord:
    value: dict[str, object] = {"type": kind}
    if text is not None:
        value["delta"] = {"type": "text", "text_delta": text}
    return ConsumedRecord(
        partition=0,
        offset=offset,
        timestamp_ms=ts,
        key=b"t",
        value=orjson.dumps(value),
        headers={"type": kind.encode(), "message_id": b"m", "seq": str(seq).encode()},
    )


def row(*texts: str) -> StreamRow:
    r = StreamRow("agent-1", "t", "m", "answer", written=list(texts), first_write=0.9995)
    r.state = "acked"
    return r


def verdict_of(r: StreamRow, *records: ConsumedRecord) -> list[str]:
    back = ReadBack([r])
    for x in records:
        back.add(x)
    return judge([r], back).failures


def test_a_good_stream_passes_and_is_measured() -> None:
    r = row("he", "llo")
    back = ReadBack([r])
    for x in (rec(0, "start", 0), rec(1, "delta", 1, "hello", ts=1003), rec(2, "done", 2)):
        back.add(x)
    v = judge([r], back)
    assert v.ok and (v.deltas, v.delta_records, v.records) == (2, 1, 3)
    assert v.latencies_ms == [4.0]  # CreateTime 1003 ms against the write's millisecond, 999
    assert (r.records, r.terminals) == (3, 1)


@pytest.mark.parametrize(
    ("records", "why"),
    [
        ((rec(0, "delta", 0, "hel"), rec(1, "delta", 2, "lo"), rec(2, "done", 2)), "seq"),
        ((rec(0, "delta", 0, "hello"),), "0 terminals"),
        ((rec(0, "delta", 0, "hello"), rec(1, "done", 1), rec(2, "done", 2)), "2 terminals"),
        ((rec(0, "delta", 0, "hlelo"), rec(1, "done", 1)), "not what the agent wrote"),
        ((), "no records"),
    ],
)
def test_each_broken_rule_is_a_failure(records: tuple[ConsumedRecord, ...], why: str) -> None:
    failures = verdict_of(row("hel", "lo"), *records)
    assert any(why in f for f in failures), failures


def test_an_unacknowledged_terminal_fails() -> None:
    r = row("x")
    r.state = "failed: NotDelivered"
    assert any(
        "not acknowledged" in f for f in verdict_of(r, rec(0, "delta", 0, "x"), rec(1, "done", 1))
    )


def test_percentile_is_nearest_rank() -> None:
    assert percentile([5.0, 1.0, 3.0, 2.0, 4.0], 50) == 3.0
    assert percentile([float(i) for i in range(1, 101)], 99) == 99.0
