"""The stream table's rules (PROTOCOL §2.2, §4, §5, §6) on a controllable clock."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from sidecar.transform.table import StreamRejected, StreamTable
from tests.transform.clock import FakeClock
from tests.transform.support import Harness, Owner, delta, done, full, parent, start


def test_first_delta_goes_out_at_once_then_the_window_merges() -> None:
    h = Harness()
    h.send(start("t", "m"))
    h.send(delta("t", "m", "a"))
    assert h.texts() == ["a"]  # leading edge: no wait
    assert h.records[-1].first_delta_at == h.clock.now
    assert h.clock.armed == 1  # nothing pending: only the idle sweep
    h.send(delta("t", "m", "b"))
    h.clock.advance(0.01)
    h.send(delta("t", "m", "c"))
    assert h.texts() == ["a"]  # inside the window: held
    assert h.clock.armed == 2  # this stream's one flush timer + the idle sweep
    assert h.table.pending_chars == 2
    h.clock.advance(0.0399)
    assert h.texts() == ["a"]
    h.clock.advance(0.0001)  # the window ends 50 ms after the last flush
    assert h.texts() == ["a", "bc"]
    merged = h.records[-1]
    assert (merged.deltas, merged.first_delta_at) == (2, None)
    assert (h.clock.armed, h.table.pending_chars) == (1, 0)
    # A quiet spell, then the first delta goes out at once again.
    h.clock.advance(1)
    h.send(delta("t", "m", "d"))
    assert h.texts() == ["a", "bc", "d"]


def test_the_window_is_measured_from_the_last_flush() -> None:
    h = Harness()
    h.send(delta("t", "m", "a"))
    h.clock.advance(0.03)
    h.send(delta("t", "m", "b"))  # held until 50 ms after "a" went out, not after "b"
    h.clock.advance(0.02)
    assert h.texts() == ["a", "b"]
    assert h.emitted_at[-1] == h.emitted_at[0] + 0.05


def test_a_delta_right_at_the_window_end_goes_out_at_once() -> None:
    h = Harness()
    h.send(delta("t", "m", "a"))
    h.clock.now = h.emitted_at[0] + 0.05  # exactly the end, before any timer could run
    h.send(delta("t", "m", "b"))
    assert h.texts() == ["a", "b"]
    assert h.clock.armed == 1


def test_a_due_window_whose_timer_has_not_run_flushes_with_the_new_delta() -> None:
    h = Harness()
    h.send(delta("t", "m", "a"))
    h.send(delta("t", "m", "b"))
    h.clock.jump(0.2)  # the loop was busy: the window's timer is due but has not run
    h.send(delta("t", "m", "c"))
    assert h.texts() == ["a", "bc"]
    assert h.clock.armed == 1  # the stale flush timer was cancelled
    fired = h.clock.fired
    h.clock.advance(0)
    assert h.clock.fired == fired


def test_size_trigger_flushes_before_the_window() -> None:
    h = Harness(max_chars=10)
    h.send(delta("t", "m", "first"))
    h.send(delta("t", "m", "12345"))
    h.send(delta("t", "m", "6789"))
    assert h.texts() == ["first"]
    h.clock.advance(0.03)
    h.send(delta("t", "m", "0"))
    assert h.texts() == ["first", "1234567890"]
    assert h.clock.armed == 1  # the flush timer went with the flush
    h.send(delta("t", "m", "x"))  # the window restarts at the size-triggered flush
    h.clock.advance(0.049)
    assert h.texts() == ["first", "1234567890"]
    h.clock.advance(0.001)
    assert h.texts() == ["first", "1234567890", "x"]


def test_interval_zero_is_one_record_per_delta() -> None:
    h = Harness(interval=0)
    for c in "abcde":
        h.send(delta("t", "m", c), ack=ord(c))
    assert h.texts() == list("abcde")
    assert [r.deltas for r in h.records] == [1] * 5
    assert h.acks() == [[ord(c)] for c in "abcde"]
    assert h.clock.armed == 1


def split(h: Harness) -> list[tuple[str, str]]:
    return [(v["delta"]["type"], h.texts()[i]) for i, v in enumerate(h.values())]


def test_same_channel_runs_merge_and_channels_are_never_reordered() -> None:
    h = Harness()
    h.send(delta("t", "m", "x"))  # leading edge
    for text, dtype in [("a", "text"), ("a", "text"), ("b", "data"), ("a", "text")]:
        h.send(delta("t", "m", text, dtype=dtype))
    h.clock.advance(0.05)
    assert split(h) == [("text", "x"), ("text", "aa"), ("data", "b"), ("text", "a")]
    assert [r.deltas for r in h.records] == [1, 2, 1, 1]


def tool(text: str, call: str, name: str = "f") -> dict[str, Any]:
    return delta("t", "m", text, dtype="tool_request", fields={"tool_call_id": call, "name": name})


def summary(text: str, i: int) -> dict[str, Any]:
    return delta("t", "m", text, dtype="reasoning_summary", fields={"summary_index": i})


@pytest.mark.parametrize(
    ("pair", "merged"),
    [
        ((delta("t", "m", "a"), delta("t", "m", "b")), True),
        ((delta("t", "m", "a", index=1), delta("t", "m", "b", index=1)), True),
        ((delta("t", "m", "a", index=0), delta("t", "m", "b", index=1)), False),
        ((delta("t", "m", "a"), delta("t", "m", "b", index=0)), False),
        ((tool("a", "c1"), tool("b", "c1")), True),
        ((tool("a", "c1"), tool("b", "c2")), False),
        ((tool("a", "c1"), tool("b", "c1", name="g")), False),
        ((summary("a", 0), summary("b", 0)), True),
        ((summary("a", 0), summary("b", 1)), False),
        ((delta("t", "m", "a"), delta("t", "m", "b", dtype="data")), False),
    ],
)
def test_what_splits_a_run(pair: tuple[dict[str, Any], dict[str, Any]], merged: bool) -> None:
    h = Harness()
    h.send(delta("t", "m", "lead"))
    h.send(pair[0])
    h.send(pair[1])
    h.clock.advance(0.05)
    assert h.texts() == (["lead", "ab"] if merged else ["lead", "a", "b"])


def test_merged_value_keeps_the_first_object_and_null_text_counts_as_empty() -> None:
    h = Harness()
    h.send(delta("t", "m", "0"))
    first = delta("t", "m", None, custom={"keep": True}, index=None, fields={"x": 1})
    h.send(first)
    h.send(delta("t", "m", "b", custom="other"))
    h.send(delta("t", "m", None))
    h.clock.advance(0.05)
    assert h.values()[-1] == {**first, "delta": {**first["delta"], "text_delta": "b"}}
    assert first["delta"]["text_delta"] is None  # the input is not mutated


@pytest.mark.parametrize("terminal", ["done", "full"])
def test_terminal_drains_pending_first_and_never_waits(terminal: str) -> None:
    h = Harness()
    h.send(start("t", "m"))
    for c in "abc":
        h.send(delta("t", "m", c))
    end = done("t", "m", index=7, extra="x") if terminal == "done" else full("t", "m", "abc")
    h.send(end)  # inside the window
    assert h.kinds() == ["start", "delta", "delta", terminal]
    assert h.texts() == ["a", "bc"]
    assert h.values()[-1] == end  # the caller's fields, exactly
    assert h.records[-1].terminal_reason == "client"
    assert [r.stream_seq for r in h.records] == [0, 1, 2, 3]
    assert (h.clock.armed, h.table.open_count, h.table.pending_chars) == (0, 0, 0)


def test_closed_stream_rejects_until_ttl_then_reopens_fresh() -> None:
    h = Harness(ttl=600)
    h.send(start("t", "m"))
    with pytest.raises(StreamRejected) as exc:
        h.send(start("t", "m"))
    assert exc.value.code == "stream_exists"
    h.send(done("t", "m"))
    h.clock.advance(599.9)
    for late in (delta("t", "m", "x"), done("t", "m"), full("t", "m", "x"), start("t", "m")):
        with pytest.raises(StreamRejected) as exc:
            h.send(late)
        assert exc.value.code == "stream_closed"
    assert len(h.records) == 2  # rejected frames produced nothing
    assert h.table.closed_count == 1
    h.clock.advance(0.1)
    h.send(start("t", "m"))
    assert h.records[-1].stream_seq == 0
    assert h.table.closed_count == 0  # pruned lazily, by the frame that came after the TTL


def test_ttl_zero_forgets_closed_keys() -> None:
    h = Harness(ttl=0)
    h.send(done("t", "m"))
    h.send(done("t", "m"))
    assert [r.stream_seq for r in h.records] == [0, 0]
    assert h.table.closed_count == 0


@pytest.mark.parametrize("first", ["delta", "done", "full"])
def test_implicit_open_without_start(first: str) -> None:
    h = Harness()
    obj = {"delta": delta("t", "m", "x"), "done": done("t", "m"), "full": full("t", "m", "x")}
    h.send(obj[first])
    assert (h.kinds(), h.records[0].stream_seq) == ([first], 0)
    assert h.table.open_count == (1 if first == "delta" else 0)


def test_a_rejected_start_changes_nothing() -> None:
    h = Harness(idle=10)
    h.send(start("t", "m"))
    h.clock.advance(5)
    with pytest.raises(StreamRejected):
        h.send(start("t", "m"), owner=Owner())
    h.clock.advance(5)  # the rejected frame did not count as activity
    assert h.kinds() == ["start", "done"]
    assert h.records[-1].terminal_reason == "idle_timeout"


@pytest.mark.parametrize("reason", ["disconnect", "shutdown", "idle_timeout"])
def test_synthesized_done_flushes_then_carries_last_parent_and_index(reason: str) -> None:
    h = Harness(idle=300)
    other = Owner()
    h.send(delta("t", "m", "a", index=3))
    h.send(delta("t", "m", "b", index=3), ack=2)
    later = {**delta("t", "m", "c", index=4), "parent_task_message": parent("t", "m", "so far")}
    h.send(later)
    h.send(delta("t", "x", "z"), owner=other)
    if reason == "disconnect":
        assert h.table.end_owned_by(h.owner, "disconnect") == 1
    elif reason == "shutdown":
        assert h.table.end_all("shutdown") == 2
    else:
        h.clock.advance(300)
    assert h.kinds("m") == ["delta", "delta", "delta", "done"]
    assert h.texts("m") == ["a", "b", "c"]
    mine = [r for r in h.records if r.message_id == "m"]
    end = mine[3]
    assert orjson.loads(end.value) == {
        "type": "done",
        "parent_task_message": parent("t", "m", "so far"),
        "index": 4,
    }
    assert (end.terminal_reason, list(end.acks), end.stream_seq) == (reason, [], 3)
    assert [[a.seq for a in r.acks] for r in mine[:3]] == [[], [2], []]


def test_idle_timeout_ends_a_stream_and_activity_defers_it() -> None:
    h = Harness(idle=300)
    h.send(start("t", "quiet"))
    h.clock.advance(200)
    h.send(start("t", "busy"))
    h.clock.advance(100)
    assert [r.kind for r in h.records] == ["start", "start", "done"]
    assert h.records[-1].message_id == "quiet"
    assert h.emitted_at[-1] == 1300.0  # on the deadline
    h.clock.advance(150)
    h.send(delta("t", "busy", "a"))  # activity: the deadline moves to 750 s
    h.clock.advance(299)
    assert h.kinds("busy") == ["start", "delta"]
    h.clock.advance(1)
    assert h.kinds("busy") == ["start", "delta", "done"]
    assert (h.clock.armed, h.table.open_count) == (0, 0)  # no stream open: no timer at all


def test_activity_moves_a_stream_behind_the_others_for_the_sweep() -> None:
    h = Harness(idle=300)
    h.send(start("t", "a"))
    h.send(start("t", "b"))
    h.clock.advance(100)
    h.send(delta("t", "a", "x"))  # "a" is now the most recently active
    h.clock.advance(200)
    assert [r.message_id for r in h.records if r.kind == "done"] == ["b"]
    h.clock.advance(100)
    assert [r.message_id for r in h.records if r.kind == "done"] == ["b", "a"]


def test_idle_sweep_survives_a_timer_that_runs_early() -> None:
    h = Harness(idle=300, clock=FakeClock(early=0.0005))
    h.send(start("t", "m"))
    h.clock.advance(301)
    assert h.kinds() == ["start", "done"]
    assert h.clock.fired == 1  # it did not re-arm for the same instant


def test_acks_ride_on_the_record_that_carries_the_line() -> None:
    h = Harness()
    h.send(start("t", "m"), ack=1)
    h.send(delta("t", "m", "a"), ack=2)
    h.send(delta("t", "m", "b"), ack=3)
    h.send(delta("t", "m", "c"), ack=4)
    h.send(delta("t", "m", "d", dtype="data"), ack=5)
    h.send(done("t", "m"), ack=6)
    assert h.acks() == [[1], [2], [3, 4], [5], [6]]


def test_terminal_only_acks_leave_deltas_bare() -> None:
    h = Harness()
    h.send(delta("t", "m", "a"))
    h.send(delta("t", "m", "b"))
    h.send(full("t", "m", "ab"), ack=3)
    assert h.acks() == [[], [], [3]]


def test_seqs_are_contiguous_per_stream() -> None:
    h = Harness(max_chars=3)
    for i in range(30):
        h.clock.advance(0.013 * (i % 5))
        h.send(delta("t", f"m{i % 3}", "ab", dtype="text" if i % 4 else "data"))
    h.table.end_all("shutdown")
    for m in ("m0", "m1", "m2"):
        seqs = [r.stream_seq for r in h.records if r.message_id == m]
        assert seqs == list(range(len(seqs)))


def test_another_connection_takes_the_stream_over() -> None:
    h = Harness()
    first, second = Owner(), Owner()
    h.send(start("t", "m"), owner=first)
    h.send(start("t", "n"), owner=first)
    h.send(delta("t", "m", "a"), owner=second)  # the agent reconnected
    assert h.table.end_owned_by(first, "disconnect") == 1  # only "n" is still first's
    assert h.kinds("m") == ["start", "delta"]
    assert h.table.end_owned_by(second, "disconnect") == 1
    assert h.kinds("m") == ["start", "delta", "done"]
    assert h.table.end_owned_by(second, "disconnect") == 0


def test_flush_all_flushes_without_ending_and_close_disarms() -> None:
    h = Harness()
    for m in ("a", "b"):
        h.send(delta("t", m, "1"))
        h.send(delta("t", m, "2"))
    assert h.clock.armed == 2  # one flush tick for both windows, and the idle sweep
    h.table.flush_all()
    assert h.texts() == ["1", "1", "2", "2"]
    assert (h.table.open_count, h.clock.armed, h.table.pending_chars) == (2, 1, 0)
    h.send(delta("t", "a", "3"))
    assert h.table.armed_timers == h.clock.armed == 2
    h.table.close()
    assert h.clock.armed == 0


def test_idle_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="idle_timeout"):
        StreamTable(
            clock=FakeClock(),
            emit=lambda r: None,
            flush_interval=0.05,
            max_buffered_chars=128,
            closed_ttl=600,
            idle_timeout=0,
        )


def test_unknown_and_null_deltas_pass_through_in_order_unmerged() -> None:
    # PROTOCOL §2.1: inside one coalescing window, an unknown delta type and a null delta
    # split the text runs around them and come out exactly as sent, in order.
    h = Harness()
    future = delta("t", "m", None)
    future["delta"] = {"type": "future_kind", "blob": {"k": [1, 2]}, "text_delta": "not text"}
    future["extra"] = True
    nothing = delta("t", "m", None)
    nothing["delta"] = None
    h.send(delta("t", "m", "a"))  # leading edge
    for obj in (delta("t", "m", "b"), future, future, delta("t", "m", "c"), nothing):
        h.send(obj)
    h.send(delta("t", "m", "d"))
    h.send(done("t", "m"))
    values = h.values()
    assert [v["delta"] for v in values[:-1]] == [
        {"type": "text", "text_delta": "a"},
        {"type": "text", "text_delta": "b"},
        future["delta"],
        future["delta"],
        {"type": "text", "text_delta": "c"},
        None,
        {"type": "text", "text_delta": "d"},
    ]
    assert values[2] == future
    assert [r.stream_seq for r in h.records] == list(range(8))
