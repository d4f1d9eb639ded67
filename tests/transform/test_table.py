"""The stream table and coalescer (PROTOCOL §2.2, §4, §5, §6) on a controllable clock."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.model import AckToken, Record, Update
from sidecar.protocol import decode_frame
from sidecar.transform.table import StreamRejected, StreamTable
from tests.helpers import done, full, parent, start, text_delta
from tests.transform.clock import FakeClock


class Owner:
    """Stands in for a connection (ownership, and acks' reply target)."""

    def send_ack(self, seq: int, partition: int, offset: int) -> None: ...

    def send_error(self, seq: int, code: str, message: str) -> None: ...


def upd(obj: dict[str, Any]) -> Update:
    frame = decode_frame(orjson.dumps(obj))
    assert isinstance(frame, Update)
    return frame


def delta(
    task: str, msg: str, dtype: str, text: str | None, index: int | None = None, **ch: Any
) -> dict[str, Any]:
    field = {
        "text": "text_delta",
        "data": "data_delta",
        "tool_request": "arguments_delta",
        "tool_response": "content_delta",
        "reasoning_summary": "summary_delta",
        "reasoning_content": "content_delta",
    }[dtype]
    return {
        "type": "delta",
        "parent_task_message": parent(task, msg),
        "delta": {"type": dtype, field: text, **ch},
        "index": index,
    }


class Harness:
    def __init__(
        self, interval: float = 0.05, max_chars: int = 128, ttl: float = 600, idle: float = 300
    ) -> None:
        self.clock = FakeClock()
        self.records: list[Record] = []
        self.table = StreamTable(
            clock=self.clock,
            emit=self.records.append,
            flush_interval=interval,
            max_buffered_chars=max_chars,
            closed_ttl=ttl,
            idle_timeout=idle,
        )
        self.owner = Owner()

    def send(
        self, obj: dict[str, Any], owner: object | None = None, ack: int | None = None
    ) -> None:
        token = AckToken(self.owner, ack) if ack is not None else None
        self.table.handle(upd(obj), owner or self.owner, token)

    def values(self) -> list[dict[str, Any]]:
        return [orjson.loads(r.value) for r in self.records]

    def texts(self) -> list[str]:
        return [v["delta"]["text_delta"] for v in self.values() if v["type"] == "delta"]


def test_first_delta_goes_out_at_once_then_the_window_merges() -> None:
    h = Harness()
    h.send(start("t", "m"))
    h.send(text_delta("t", "m", "a"))
    assert h.texts() == ["a"]  # leading edge: no wait
    assert h.records[-1].first_delta_at == h.clock.now
    h.send(text_delta("t", "m", "b"))
    h.clock.advance(0.01)
    h.send(text_delta("t", "m", "c"))
    assert h.texts() == ["a"]  # inside the window: held
    assert h.clock.armed == 2  # this stream's flush timer + the idle sweep
    h.clock.advance(0.04)  # the window ends 50 ms after the last flush
    assert h.texts() == ["a", "bc"]
    assert h.records[-1].deltas == 2
    # A quiet spell, then the first delta goes out at once again.
    h.clock.advance(1)
    h.send(text_delta("t", "m", "d"))
    assert h.texts() == ["a", "bc", "d"]


def test_size_trigger_flushes_before_the_window() -> None:
    h = Harness(max_chars=10)
    h.send(text_delta("t", "m", "first"))
    h.send(text_delta("t", "m", "12345"))
    h.send(text_delta("t", "m", "67890"))
    assert h.texts() == ["first", "1234567890"]
    assert h.clock.armed == 1  # only the idle sweep: nothing pending, no flush timer


def test_only_consecutive_same_channel_deltas_merge() -> None:
    h = Harness()
    h.send(delta("t", "m", "text", "x"))  # leading edge
    seq = [
        delta("t", "m", "text", "a"),
        delta("t", "m", "text", "b"),
        delta("t", "m", "text", "c", index=1),  # other update index
        delta("t", "m", "tool_request", "{", tool_call_id="c1", name="f"),
        delta("t", "m", "tool_request", "}", tool_call_id="c1", name="f"),
        delta("t", "m", "tool_request", "[", tool_call_id="c2", name="f"),  # other call
        delta("t", "m", "reasoning_summary", "r", summary_index=0),
        delta("t", "m", "reasoning_summary", "s", summary_index=1),
        delta("t", "m", "text", None),  # null counts as ""
        delta("t", "m", "text", "d"),
    ]
    for obj in seq:
        h.send(obj)
    h.clock.advance(0.05)
    got = [
        (
            v["delta"]["type"],
            v["delta"].get("text_delta")
            or v["delta"].get("arguments_delta")
            or v["delta"].get("summary_delta"),
        )
        for v in h.values()
    ]
    assert got == [
        ("text", "x"),
        ("text", "ab"),
        ("text", "c"),
        ("tool_request", "{}"),
        ("tool_request", "["),
        ("reasoning_summary", "r"),
        ("reasoning_summary", "s"),
        ("text", "d"),
    ]


def test_merged_value_is_the_first_delta_with_text_concatenated() -> None:
    h = Harness()
    h.send(text_delta("t", "m", "0"))
    first = text_delta("t", "m", "a", custom={"keep": True}, index=None)
    h.send(first)
    h.send(text_delta("t", "m", "b", custom="other"))
    h.clock.advance(0.05)
    merged = h.values()[-1]
    assert merged == {**first, "delta": {"type": "text", "text_delta": "ab"}}
    assert first["delta"]["text_delta"] == "a"  # the input is not mutated


def test_interval_zero_is_one_record_per_delta() -> None:
    h = Harness(interval=0)
    for c in "abcde":
        h.send(text_delta("t", "m", c))
    assert h.texts() == list("abcde")
    assert h.clock.armed == 1


@pytest.mark.parametrize("terminal", ["done", "full"])
def test_terminal_drains_pending_first_and_never_waits(terminal: str) -> None:
    h = Harness()
    h.send(start("t", "m"))
    h.send(text_delta("t", "m", "a"))
    h.send(text_delta("t", "m", "b"))
    h.send(text_delta("t", "m", "c"))
    end = (
        done("t", "m", index=7, extra="x") if terminal == "done" else full("t", "m", "abc", index=7)
    )
    h.send(end)  # inside the window
    kinds = [r.kind for r in h.records]
    assert kinds == ["start", "delta", "delta", terminal]
    assert h.texts() == ["a", "bc"]
    assert h.values()[-1] == end  # the caller's fields, exactly
    assert h.records[-1].terminal_reason == "client"
    assert [r.stream_seq for r in h.records] == [0, 1, 2, 3]
    assert h.clock.armed == 0  # nothing left armed: no stream is open
    h.clock.advance(10)
    assert len(h.records) == 4  # no trailing delta after the terminal


def test_closed_stream_rejects_until_ttl_then_can_reopen() -> None:
    h = Harness(ttl=600)
    h.send(start("t", "m"))
    with pytest.raises(StreamRejected) as exc:
        h.send(start("t", "m"))
    assert exc.value.code == "stream_exists"
    h.send(done("t", "m"))
    for late in (text_delta("t", "m", "x"), done("t", "m"), start("t", "m")):
        with pytest.raises(StreamRejected) as exc:
            h.send(late)
        assert exc.value.code == "stream_closed"
    assert len(h.records) == 2
    h.clock.advance(601)
    h.send(start("t", "m"))
    assert h.records[-1].stream_seq == 0


def test_implicit_open_without_start() -> None:
    h = Harness()
    h.send(text_delta("t", "m", "x"))
    h.send(done("t", "m"))
    assert [r.kind for r in h.records] == ["delta", "done"]


@pytest.mark.parametrize("reason", ["disconnect", "shutdown"])
def test_synthesized_done_after_flush_with_last_parent_and_index(reason: str) -> None:
    h = Harness()
    other = Owner()
    h.send(text_delta("t", "m", "a", index=4))
    h.send(text_delta("t", "m", "b", index=4))
    h.send(text_delta("t", "x", "z"), owner=other)
    n = (
        h.table.end_owned_by(h.owner, "disconnect")
        if reason == "disconnect"
        else h.table.end_all("shutdown")
    )
    assert n == (1 if reason == "disconnect" else 2)
    mine = [r for r in h.records if r.message_id == "m"]
    assert [r.kind for r in mine] == ["delta", "delta", "done"]
    body = orjson.loads(mine[-1].value)
    assert body == {"type": "done", "parent_task_message": parent("t", "m"), "index": 4}
    assert mine[-1].terminal_reason == reason


def test_idle_timeout_ends_a_stream_and_activity_defers_it() -> None:
    h = Harness(idle=300)
    h.send(start("t", "quiet"))
    h.clock.advance(200)
    h.send(start("t", "busy"))
    h.clock.advance(101)  # quiet: 301 s idle; busy: 101 s
    ends = [(r.message_id, r.terminal_reason) for r in h.records if r.kind == "done"]
    assert ends == [("quiet", "idle_timeout")]
    h.clock.advance(199)
    ends = [(r.message_id, r.terminal_reason) for r in h.records if r.kind == "done"]
    assert ends == [("quiet", "idle_timeout"), ("busy", "idle_timeout")]
    assert h.clock.armed == 0


def test_acks_ride_on_the_record_that_carries_the_line() -> None:
    h = Harness()
    h.send(start("t", "m"), ack=1)
    h.send(text_delta("t", "m", "a"), ack=2)
    h.send(text_delta("t", "m", "b"), ack=3)
    h.send(text_delta("t", "m", "c"), ack=4)
    h.send(done("t", "m"), ack=5)
    assert [[a.seq for a in r.acks] for r in h.records] == [[1], [2], [3, 4], [5]]


def test_a_done_then_disconnect_or_shutdown_is_not_doubled() -> None:
    h = Harness()
    h.send(text_delta("t", "m", "a"))
    h.send(text_delta("t", "m", "b"))
    h.send(done("t", "m"))
    assert h.table.end_owned_by(h.owner, "disconnect") == 0
    assert h.table.end_all("shutdown") == 0
    h.clock.advance(1000)
    assert [r.kind for r in h.records].count("done") == 1


def test_another_connection_takes_the_stream_over() -> None:
    h = Harness()
    first, second = Owner(), Owner()
    h.send(start("t", "m"), owner=first)
    h.send(text_delta("t", "m", "a"), owner=second)
    assert h.table.end_owned_by(first, "disconnect") == 0
    assert h.table.end_owned_by(second, "disconnect") == 1


def test_idle_streams_cost_nothing_fake_clock() -> None:
    h = Harness()
    for i in range(5000):
        h.send(start("t", f"m{i}"))
        h.send(text_delta("t", f"m{i}", "first"))  # flushed at once: nothing pending
    assert h.table.open_count == 5000
    assert h.clock.armed == 1  # the one idle sweep, for all of them
    fired = h.clock.fired
    h.clock.advance(10)
    assert h.clock.fired == fired  # ten seconds, zero wake-ups


async def test_idle_streams_cost_nothing_on_a_real_loop() -> None:
    loop = asyncio.get_running_loop()
    records: list[Record] = []
    table = StreamTable(
        clock=loop,
        emit=records.append,
        flush_interval=0.05,
        max_buffered_chars=128,
        closed_ttl=600,
        idle_timeout=300,
    )
    owner = Owner()
    before = len([h for h in loop._scheduled if not h.cancelled()])  # type: ignore[attr-defined]
    for i in range(5000):
        table.handle(upd(start("t", f"m{i}")), owner, None)
        table.handle(upd(text_delta("t", f"m{i}", "x")), owner, None)
    live = [h for h in loop._scheduled if not h.cancelled()]  # type: ignore[attr-defined]
    assert len(live) - before <= 1
    assert len(asyncio.all_tasks()) == 1  # this test's own task: no task per stream
    table.close()


async def test_close_paths_have_nothing_to_cancel() -> None:
    """end_all runs to completion synchronously: cancelling the task that called it
    right after cannot lose or duplicate a record."""
    h = Harness()
    for i in range(50):
        h.send(text_delta("t", f"m{i}", "a"))
        h.send(text_delta("t", f"m{i}", "b"))

    async def closer() -> None:
        h.table.end_all("shutdown")
        await asyncio.sleep(3600)

    task = asyncio.create_task(closer())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for i in range(50):
        kinds = [r.kind for r in h.records if r.message_id == f"m{i}"]
        assert kinds == ["delta", "delta", "done"]


# -- property: any interleaving keeps every stream's promise ------------------------------

ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("delta"),
            st.integers(0, 3),
            st.sampled_from(["text", "data"]),
            st.integers(0, 1),
        ),
        st.tuples(st.just("done"), st.integers(0, 3), st.just(""), st.just(0)),
        st.tuples(st.just("advance"), st.integers(0, 3), st.just(""), st.integers(0, 120)),
        st.tuples(st.just("disconnect"), st.integers(0, 1), st.just(""), st.just(0)),
    ),
    max_size=80,
)


@settings(max_examples=200, deadline=None)
@given(ops, st.sampled_from([0.0, 0.05]), st.integers(1, 20))
def test_property_order_text_and_acks(
    script: list[tuple[str, int, str, int]], interval: float, max_chars: int
) -> None:
    h = Harness(interval=interval, max_chars=max_chars, ttl=0.5, idle=5)
    owners = [Owner(), Owner()]
    sent: dict[tuple[str, str], dict[tuple[str, int], str]] = {}
    acked: list[int] = []
    for seq, (op, s, dtype, n) in enumerate(script, 1):
        key = ("t", f"m{s}")
        try:
            if op == "delta":
                text = f"{seq},"
                h.send(delta("t", key[1], dtype, text, index=n), owner=owners[s % 2], ack=seq)
                chan = sent.setdefault(key, {})
                chan[(dtype, n)] = chan.get((dtype, n), "") + text
                acked.append(seq)
            elif op == "done":
                h.send(done("t", key[1]), owner=owners[s % 2], ack=seq)
                acked.append(seq)
            elif op == "advance":
                h.clock.advance(n / 100)
            else:
                h.table.end_owned_by(owners[s], "disconnect")
        except StreamRejected:
            pass
    h.table.end_all("shutdown")
    # Group records per stream incarnation (a key may reopen after its TTL).
    seen_acks = [a.seq for r in h.records for a in r.acks]
    assert sorted(seen_acks) == sorted(set(seen_acks))  # no line acked twice
    assert set(seen_acks) <= set(acked)
    streams: dict[tuple[str, str], list[list[Record]]] = {}
    for r in h.records:
        runs = streams.setdefault((r.task_id, r.message_id), [[]])
        if runs[-1] and runs[-1][-1].kind in ("done", "full"):
            runs.append([])
        runs[-1].append(r)
    got: dict[tuple[str, str], dict[tuple[str, int], str]] = {}
    for key, runs in streams.items():
        for recs in runs:
            assert [r.stream_seq for r in recs] == list(range(len(recs)))
            assert recs[-1].kind == "done"
            assert [r.kind for r in recs[:-1]].count("done") == 0
            for r in recs[:-1]:
                v = orjson.loads(r.value)
                d = v["delta"]
                text = d.get("text_delta") or d.get("data_delta") or ""
                chan = got.setdefault(key, {})
                chan[(d["type"], v["index"])] = chan.get((d["type"], v["index"]), "") + text
    for key, chans in sent.items():
        assert got.get(key, {}) == chans
