"""The stream table's side of the memory budget: what open and closed streams cost and
count, the closed-stream table's byte bound, and terminals that wait for room."""

from __future__ import annotations

import gc
import logging
import tracemalloc

import orjson
import pytest

from sidecar.budget import CLOSED_ENTRY_BYTES, Budget
from sidecar.model import Record
from sidecar.transform.table import StreamRejected, StreamTable
from sidecar_client.protocol import decode_frame
from sidecar_client.protocol.model import Update
from tests.transform.clock import FakeClock
from tests.transform.support import Owner, delta, done, start, update


class Table:
    """A table on a fake clock with a budget and a switch for the sink's room."""

    def __init__(self, *, ttl: float = 600, max_closed_bytes: int = 8 << 20) -> None:
        self.clock = FakeClock()
        self.budget = Budget()
        self.records: list[Record] = []
        self.room = True
        self.table = StreamTable(
            clock=self.clock,
            emit=self.records.append,
            flush_interval=0.05,
            max_buffered_chars=128,
            closed_ttl=ttl,
            idle_timeout=300,
            max_closed_bytes=max_closed_bytes,
            budget=self.budget,
            room=lambda: self.room,
        )

    def send(self, obj: dict[str, object], owner: Owner) -> None:
        self.table.handle(update(obj), owner, None)

    def kinds(self, msg: str) -> list[tuple[str, str | None]]:
        return [(r.kind, r.terminal_reason) for r in self.records if r.message_id == msg]


def _decoded(lines: list[bytes]) -> list[Update]:
    out = []
    for raw in lines:
        frame = decode_frame(raw)
        assert isinstance(frame, Update)
        out.append(frame)
    return out


@pytest.mark.parametrize("id_chars", [12, 256])
def test_open_streams_are_counted_at_no_less_than_they_hold(id_chars: int) -> None:
    """tracemalloc over 20,000 streams opened by agentex `start` lines: what the budget
    counts per open stream covers what the table really holds, and not by much more."""
    t = Table()
    owner = Owner()
    n = 20_000
    pad = "x" * (id_chars - 9)
    lines = [orjson.dumps(start(f"t{pad}{i:08d}", f"m{pad}{i:08d}")) for i in range(n)]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for raw in lines:  # decoded here: the parent and ids the table keeps are counted
            (frame,) = _decoded([raw])
            t.table.handle(frame, owner, None)
        del frame
        t.records.clear()  # the records are the sink's (their values are the lines)
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    counted = t.budget.open_streams
    assert t.table.open_count == n
    assert held <= counted <= 1.5 * held, (held / n, counted / n)
    assert held / n <= 1536  # issue 7: an idle open stream <= 1.5 KB (ids of 256 included)


def test_deltas_waiting_in_windows_are_counted_at_no_less_than_they_hold() -> None:
    t = Table()
    owner = Owner()
    n = 2000
    for i in range(n):
        t.send(start("t", f"m{i}"), owner)
        t.send(delta("t", f"m{i}", "first"), owner)  # the leading edge goes out at once
    lines = [orjson.dumps(delta("t", f"m{i}", f"w{j}")) for i in range(n) for j in range(3)]
    t.records.clear()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for raw in lines:
            (frame,) = _decoded([memoryview(raw).tobytes()])  # its own bytes, as a read slices
            t.table.handle(frame, owner, None)
        del frame
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert not t.records  # all of them wait in their windows
    counted = t.table.window_bytes()
    assert held <= counted <= 2 * held, (held / len(lines), counted / len(lines))
    t.clock.advance(1)  # the windows flush
    assert t.table.window_bytes() == 0


@pytest.mark.parametrize("id_chars", [12, 256])
def test_a_closed_stream_costs_a_fixed_entry_whatever_its_ids(id_chars: int) -> None:
    t = Table()
    owner = Owner()
    n = 20_000
    pad = "x" * (id_chars - 9)
    for i in range(n):
        t.send(start(f"t{pad}{i:08d}", f"m{pad}{i:08d}"), owner)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        t.table.end_owned_by(owner, "disconnect")
        t.records.clear()  # the records are the sink's, not the table's
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert t.table.open_count == 0 and t.table.closed_count == n
    assert t.budget.open_streams == 0
    assert t.budget.closed_streams == n * CLOSED_ENTRY_BYTES
    # Freed stream state makes `held` negative; the closed table itself is what remains.
    assert held <= n * CLOSED_ENTRY_BYTES


def test_the_closed_table_forgets_its_oldest_early_past_its_bound(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="sidecar.transform")
    t = Table(max_closed_bytes=10 * CLOSED_ENTRY_BYTES)
    owner = Owner()
    for i in range(25):
        t.send(start("t", f"m{i}"), owner)
        t.send(done("t", f"m{i}"), owner)
    assert t.table.closed_count == 10
    assert t.budget.closed_streams == 10 * CLOSED_ENTRY_BYTES
    assert t.table.forgotten_early == 15
    # Logged once (once a minute at most), not once per stream.
    warnings = [r for r in caplog.records if "closed-stream table full" in r.message]
    assert len(warnings) == 1
    # The newest are still refused; the oldest, forgotten, may be opened again.
    with pytest.raises(StreamRejected):
        t.send(start("t", "m24"), owner)
    t.send(start("t", "m0"), owner)
    t.send(done("t", "m0"), owner)
    # Expiry by TTL frees the budget too.
    t.clock.advance(601)
    t.send(start("t", "new"), owner)
    t.send(done("t", "new"), owner)  # closing prunes the expired front
    assert t.table.closed_count == 1
    assert t.budget.closed_streams == CLOSED_ENTRY_BYTES


def test_streams_ended_without_room_wait_closed_and_go_out_in_order_with_room() -> None:
    t = Table()
    owner = Owner()
    for i in range(5):
        t.send(start("t", f"m{i}"), owner)
        t.send(delta("t", f"m{i}", "a"), owner)  # leading edge: out at once
        t.send(delta("t", f"m{i}", "b"), owner)  # pending in its window
    produced = len(t.records)
    t.room = False  # reads are paused: the sink is over the limit
    assert t.table.end_owned_by(owner, "disconnect") == 5
    assert len(t.records) == produced  # nothing more while there is no room
    assert t.table.open_count == 5 and t.table.ending_count == 5
    assert t.clock.armed == 0  # the waiting streams hold no timer
    with pytest.raises(StreamRejected):  # closed at once: no frame may follow
        t.table.handle(update(delta("t", "m0", "c")), Owner(), None)
    t.room = True
    assert t.table.drain_ending()
    for i in range(5):
        assert t.kinds(f"m{i}") == [
            ("start", None),
            ("delta", None),
            ("delta", None),
            ("done", "disconnect"),
        ]
    seqs = [r.stream_seq for r in t.records if r.message_id == "m0"]
    assert seqs == [0, 1, 2, 3]
    assert t.table.open_count == 0 and t.budget.open_streams == 0


def test_draining_stops_when_the_room_is_gone_and_shutdown_ends_every_waiting_stream() -> None:
    t = Table()
    owner = Owner()
    for i in range(4):
        t.send(start("t", f"m{i}"), owner)
    t.room = False
    t.table.end_owned_by(owner, "disconnect")
    budget = [True, False]  # room for one terminal, then none

    def room() -> bool:
        return budget.pop(0) if budget else False

    t.table._room = room
    assert not t.table.drain_ending()
    assert t.table.ending_count == 3
    t.table.end_all("shutdown")  # shutdown waits for nothing
    assert t.table.ending_count == 0
    for i in range(4):
        assert t.kinds(f"m{i}") == [("start", None), ("done", "disconnect")]


def test_a_reused_key_gets_its_old_terminal_first_with_no_closed_memory() -> None:
    t = Table(ttl=0)
    owner = Owner()
    t.send(start("t", "m"), owner)
    t.room = False
    t.table.end_owned_by(owner, "disconnect")
    t.send(start("t", "m"), Owner())  # --closed-stream-ttl 0: the key may be reused
    assert t.kinds("m") == [("start", None), ("done", "disconnect"), ("start", None)]
    assert [r.stream_seq for r in t.records] == [0, 1, 0]


def test_a_waiting_stream_that_fails_gets_one_terminal() -> None:
    """A record of a stream waiting for its terminal finally fails: the delivery_failed
    terminal replaces the waiting one (one terminal per stream)."""
    t = Table()
    owner = Owner()
    t.send(start("t", "m"), owner)
    t.send(delta("t", "m", "a"), owner)
    first = t.records[-1]
    t.room = False
    t.table.end_owned_by(owner, "disconnect")
    assert t.table.fail_stream(first, "timed out") is not None
    t.room = True
    assert t.table.drain_ending()
    assert t.kinds("m") == [("start", None), ("delta", None), ("done", "delivery_failed")]
    assert t.table.open_count == 0 and t.budget.open_streams == 0
