"""Property: for any interleaving of frames, clock moves, disconnects, flushes and
shutdowns, every stream keeps its promise (PROTOCOL §2.2, §4, §5, §6).

A model follows the table op by op and checks each record as it is emitted: the stream
rules' rejections; an optional start first; every delta line exactly once, in order, in a
record of its own channel, out at once or held exactly as §4 says; exactly one terminal,
last, with the right reason and fields; contiguous seqs; every requested ack on the record
carrying its line; and no timer the table lost track of.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.model import AckToken, Record, StreamKey, Update
from sidecar.transform.table import StreamRejected
from tests.transform.support import (
    DELTA_SPECS,
    Harness,
    Owner,
    channel_of,
    delta,
    done,
    full,
    start,
    text_of,
    update,
)


@dataclass
class Op:
    kind: str
    stream: int = 0
    owner: int = 0
    ack: bool = False
    dtype: str = "text"
    call: int = 0
    index: int | None = None
    centis: int = 0


# Weighted by repetition: mostly deltas, so windows fill and terminals land inside them.
KINDS = ["delta"] * 10 + ["start", "done", "full"] + ["advance"] * 3 + ["jump"] * 2
KINDS += ["disconnect", "flush_all", "end_all"]
ops = st.builds(
    Op,
    kind=st.sampled_from(KINDS),
    stream=st.integers(0, 2),
    owner=st.integers(0, 1),
    ack=st.booleans(),
    dtype=st.sampled_from(["text", "tool_request"]),
    call=st.integers(0, 1),
    index=st.sampled_from([None, 0, 1]),
    centis=st.one_of(st.integers(0, 6), st.integers(0, 150)),  # inside a window, or past it
)
scripts = st.lists(ops, max_size=80)
FRAMES = ("start", "delta", "done", "full")


def frame(op: Op, seq: int) -> dict[str, Any]:
    msg = f"m{op.stream}"
    if op.kind == "start":
        return start("t", msg, index=op.index)
    if op.kind == "done":
        return done("t", msg, index=op.index, unknown=seq)
    if op.kind == "full":
        return full("t", msg, "whole", index=op.index)
    fields = {"tool_call_id": f"c{op.call}", "name": "f"} if op.dtype == "tool_request" else {}
    return delta("t", msg, f"{seq},", dtype=op.dtype, fields=fields, index=op.index)


@dataclass
class Line:
    seq: int
    upd: Update
    ack: bool


@dataclass
class Inc:
    """One incarnation of a stream key, as the model expects it."""

    start: Line | None
    owner: Owner
    last: Line
    last_active: float
    deltas: list[Line] = field(default_factory=list)
    cursor: int = 0  # delta lines already carried by records
    terminal: Line | None = None
    next_seq: int = 0
    flushed_at: float | None = None  # when its last delta record went out
    closed_at: float | None = None

    def held(self) -> list[Line]:
        return self.deltas[self.cursor :]


class Model:
    def __init__(self, h: Harness, interval: float, max_chars: int, idle: float, ttl: float):
        self.h, self.interval, self.max_chars = h, interval, max_chars
        self.idle, self.ttl = idle, ttl
        self.incs: dict[StreamKey, Inc] = {}
        self.want_acks: list[int] = []
        self.got_acks: list[int] = []
        self.seen = 0  # records checked so far

    def open_incs(self) -> list[Inc]:
        return [i for i in self.incs.values() if i.closed_at is None]

    def expect_rejection(self, key: StreamKey, kind: str, now: float) -> str | None:
        inc = self.incs.get(key)
        if inc is None:
            return None
        if inc.closed_at is None:
            return "stream_exists" if kind == "start" else None
        return "stream_closed" if inc.closed_at > now - self.ttl else None

    def accept(self, key: StreamKey, line: Line, owner: Owner, now: float) -> bool:
        """Record an accepted line; for a delta, whether it must go out at once (§4)."""
        inc = self.incs.get(key)
        kind = line.upd.kind
        if inc is None or inc.closed_at is not None:
            first = line if kind == "start" else None
            inc = self.incs[key] = Inc(start=first, owner=owner, last=line, last_active=now)
        inc.owner, inc.last, inc.last_active = owner, line, now
        if line.ack:
            self.want_acks.append(line.seq)
        if kind in ("done", "full"):
            inc.terminal = line
        if kind != "delta":
            return True
        inc.deltas.append(line)
        return (
            inc.flushed_at is None
            or self.interval == 0
            or now >= inc.flushed_at + self.interval
            or sum(len(ln.upd.text) for ln in inc.held()) >= self.max_chars
        )

    def check_new(self, reasons: set[str], keys: set[StreamKey] | None = None) -> None:
        """Check the records emitted since the last call: terminals must have a reason in
        `reasons`, records must belong to `keys` (None: any)."""
        h = self.h
        for record, at in zip(h.records[self.seen :], h.emitted_at[self.seen :], strict=True):
            key = (record.task_id, record.message_id)
            assert keys is None or key in keys
            self.check(record, self.incs[key], reasons, at)
        self.seen = len(h.records)

    def check(self, r: Record, inc: Inc, reasons: set[str], at: float) -> None:
        assert inc.closed_at is None, "a record after the terminal"
        assert r.stream_seq == inc.next_seq
        inc.next_seq += 1
        acks = [a.seq for a in r.acks]
        self.got_acks += acks
        if r.kind == "start":
            assert r.stream_seq == 0 and inc.start is not None
            assert (r.value, acks) == (inc.start.upd.raw, [inc.start.seq] * inc.start.ack)
        elif r.kind == "delta":
            self.check_delta(r, inc, acks, at)
        else:
            self.check_terminal(r, inc, reasons, acks, at)

    def check_delta(self, r: Record, inc: Inc, acks: list[int], at: float) -> None:
        covered = inc.held()[: r.deltas]
        assert r.deltas >= 1 and len(covered) == r.deltas
        inc.cursor += r.deltas
        inc.flushed_at = at
        value = orjson.loads(r.value)
        assert {channel_of(ln.upd.body) for ln in covered} == {channel_of(value)}
        assert text_of(value) == "".join(ln.upd.text for ln in covered)
        assert acks == [ln.seq for ln in covered if ln.ack]
        first = covered[0].upd
        if r.deltas == 1:
            assert r.value is first.raw
        else:
            text_field = DELTA_SPECS[first.body["delta"]["type"]][0]
            inner = {**first.body["delta"], text_field: text_of(value)}
            assert value == {**first.body, "delta": inner}

    def check_terminal(
        self, r: Record, inc: Inc, reasons: set[str], acks: list[int], at: float
    ) -> None:
        assert r.terminal_reason in reasons
        assert not inc.held(), "a terminal before pending deltas"
        t = inc.terminal
        if r.terminal_reason == "client":
            assert t is not None and (r.kind, r.value) == (t.upd.kind, t.upd.raw)
            assert acks == [t.seq] * t.ack
        else:
            assert t is None and r.kind == "done" and acks == []
            body = inc.last.upd.body
            synthesized = {
                "type": "done",
                "parent_task_message": body["parent_task_message"],
                "index": body.get("index"),
            }
            assert orjson.loads(r.value) == synthesized
            if r.terminal_reason == "idle_timeout":
                assert at >= inc.last_active + self.idle
        inc.closed_at = at

    def check_table(self) -> None:
        h, table = self.h, self.h.table
        open_incs = self.open_incs()
        assert table.open_count == len(open_incs)
        assert h.clock.armed == table.armed_timers  # no handle the table lost track of
        holding = [i for i in open_incs if i.held()]
        assert h.clock.armed <= len(holding) + (1 if open_incs else 0)
        assert table.pending_chars == sum(len(ln.upd.text) for i in holding for ln in i.held())


class Driver:
    def __init__(self, interval: float, max_chars: int, ttl: float, idle: float) -> None:
        self.h = Harness(interval=interval, max_chars=max_chars, ttl=ttl, idle=idle)
        self.model = Model(self.h, interval, max_chars, idle, ttl)
        self.owners = [Owner(), Owner()]

    def frame(self, op: Op, seq: int) -> None:
        h, model = self.h, self.model
        upd, owner, now = update(frame(op, seq)), self.owners[op.owner], h.clock.time()
        want = model.expect_rejection(upd.key, upd.kind, now)
        before = len(h.records)
        try:
            h.table.handle(upd, owner, AckToken(owner, seq) if op.ack else None)
            got = None
        except StreamRejected as exc:
            got = exc.code
        assert got == want
        if got is not None:
            assert len(h.records) == before  # a rejected line produces nothing
            return
        at_once = model.accept(upd.key, Line(seq, upd, op.ack), owner, now)
        model.check_new({"client"}, {upd.key})
        if upd.kind == "delta":  # out at once, or held until its window closes
            assert not model.incs[upd.key].held() if at_once else len(h.records) == before

    def run(self, op: Op, seq: int) -> None:
        h, model, table = self.h, self.model, self.h.table
        if op.kind in FRAMES:
            self.frame(op, seq)
        elif op.kind == "advance":
            h.clock.advance(op.centis / 100)
            model.check_new({"idle_timeout"})
            now = h.clock.time()
            for inc in model.open_incs():
                assert inc.last_active + model.idle > now  # the sweep missed none
                if inc.held():  # and every window closes on time
                    assert inc.flushed_at is not None
                    assert now < inc.flushed_at + model.interval
        elif op.kind == "jump":
            h.clock.jump(op.centis / 100)  # timers come due but do not run
            model.check_new(set(), set())
        elif op.kind == "disconnect":
            owner = self.owners[op.owner]
            mine = {k for k, i in model.incs.items() if i.closed_at is None and i.owner is owner}
            assert table.end_owned_by(owner, "disconnect") == len(mine)
            model.check_new({"disconnect"}, mine)
            assert all(model.incs[k].closed_at is not None for k in mine)
        elif op.kind == "flush_all":
            table.flush_all()
            model.check_new(set())
            assert not any(i.held() for i in model.incs.values())
        else:
            assert table.end_all("shutdown") == len(model.open_incs())
            model.check_new({"shutdown"})
        model.check_table()


@settings(max_examples=400, deadline=None)
@given(
    scripts,
    st.sampled_from([0.0, 0.05]),
    st.integers(1, 12),
    st.sampled_from([0.0, 0.5, 1e9]),
    st.sampled_from([1.0, 5.0]),
)
def test_every_stream_keeps_its_promise(
    script: list[Op], interval: float, max_chars: int, ttl: float, idle: float
) -> None:
    d = Driver(interval, max_chars, ttl, idle)
    for seq, op in enumerate(script, 1):
        d.run(op, seq)
    h, model = d.h, d.model
    h.table.end_all("shutdown")
    model.check_new({"shutdown"})
    assert not model.open_incs()
    assert not any(i.held() for i in model.incs.values())
    assert sorted(model.got_acks) == sorted(model.want_acks)
    assert len(set(model.got_acks)) == len(model.got_acks)
    assert (h.table.open_count, h.table.pending_chars, h.clock.armed) == (0, 0, 0)
