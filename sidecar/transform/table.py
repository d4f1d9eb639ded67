"""The stream table: which streams are open, closed or idle, and their coalescing (PROTOCOL
§2.2, §4, §5, §6).

Plain synchronous code driven by a `Clock` (the event loop) and emitting `Record`s through
`emit` in order. There is no task per stream, so nothing can be orphaned, left spinning,
or cancelled half-way:

- Coalescing windows share ONE table-wide flush tick: a stream with pending deltas has a
  due time (the end of its window) in a heap, and the tick is armed at the earliest one
  only while some window is open; when it runs it flushes every window that is due. Ticks
  are at least a tenth of the flush interval apart, so a window may end up to that much
  late, and thousands of windows cost a few hundred wake-ups a second, not one each.
  Idle expiry uses ONE table-wide timer too, armed at the earliest idle deadline only
  while some stream is open. With nothing pending and nothing open, no timer is armed.
- A terminal flushes the stream's pending deltas and emits itself in the same call, then
  closes the stream, so "deltas in order, then exactly one terminal, then nothing" holds
  by construction, and no close path has an `await` a cancellation could land on.

Ownership: a stream belongs to the connection (`owner`) that sent its first frame, and to
that connection's peer uid. A frame for an open stream from ANOTHER owner of the SAME uid
is accepted and moves the stream to that owner: an agent that reconnects (with
`--on-disconnect keep`) takes its streams with it, and only the new connection's
disconnect ends them. A frame from another uid is rejected (`stream_owned`): one agent
cannot write into, end, or (by disconnecting) cut another agent's stream.

A rejected frame changes nothing, and does not count as activity for the idle timeout.

Memory (sidecar.budget): open streams are counted when they open and released when they
close; closed streams are remembered as a 128-bit digest of their ids (a fixed ~200
bytes each) in a table bounded by bytes, oldest forgotten early past it. A stream ended
while the sink has no room (reads paused) is closed at once but its flush and `done`
wait in `_ending` until there is room, so synthesized terminals respect the limit too.

No silent holes (PROTOCOL §5): when a record of a stream finally fails, `fail_stream` ends
the stream right there with a `done` (`delivery_failed`) that takes the failed record's
`seq`; pending deltas are dropped, and the sink withdraws the stream's later records
(`withdrawn`), so consumers see the stream's records up to the hole, then its terminal.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import orjson

from sidecar.budget import CLOSED_ENTRY_BYTES, Budget, open_stream_cost, window_entry_cost
from sidecar.model import (
    AckToken,
    Clock,
    Emit,
    Record,
    ReplyTarget,
    StreamKey,
    TerminalReason,
    TimerHandle,
    Update,
    UpdateKind,
)
from sidecar.quoting import quote
from sidecar.transform.merge import delta_record, exact, runs
from sidecar.transform.stream import Stream
from sidecar_client.protocol.replies import ErrorCode, Rejection

DELIVERY_FAILED: TerminalReason = "delivery_failed"

log = logging.getLogger("sidecar.transform")

# The closed-stream table's log line about forgetting early, at most once per this long.
_FORGOTTEN_LOG_SECONDS = 60.0


def digest(key: StreamKey) -> int:
    """A closed stream as the table remembers it: a 128-bit digest of its ids, so an
    entry costs the same whatever the ids' length (a collision, at 2^-64 odds over
    billions of streams, would refuse one new stream as stream_closed)."""
    task_id, message_id = key
    h = hashlib.blake2b(task_id.encode(), digest_size=16)
    h.update(b"\0")  # ids hold no control characters: the separator is unambiguous
    h.update(message_id.encode())
    return int.from_bytes(h.digest(), "little")


class StreamRejected(Rejection):
    """A frame that breaks the stream rules (`stream_exists`, `stream_closed`,
    `stream_owned`); it produced nothing."""


class StreamTable:
    """Every open stream, and the recently closed keys (PROTOCOL §2.2).

    `flush_interval` is in seconds (0 turns coalescing off); `closed_ttl` (seconds, 0 to
    forget closed keys at once) and `idle_timeout` (seconds, > 0) likewise.
    """

    def __init__(
        self,
        *,
        clock: Clock,
        emit: Emit,
        flush_interval: float,
        max_buffered_chars: int,
        closed_ttl: float,
        idle_timeout: float,
        failed_ttl: float = 0.0,
        max_closed_bytes: int = 8 << 20,
        budget: Budget | None = None,
        room: Callable[[], bool] | None = None,
    ) -> None:
        if idle_timeout <= 0:
            raise ValueError("idle_timeout must be positive")
        self._clock = clock
        self._emit = emit
        self._interval = max(0.0, flush_interval)
        self._max_chars = max_buffered_chars
        self._closed_ttl = closed_ttl
        self._idle_timeout = idle_timeout
        # OrderedDicts, not dicts: a plain dict walks its deleted slots to reach the front,
        # so popping/peeking the oldest entry repeatedly would be quadratic.
        # Open streams in last-activity order: a frame moves its stream to the end.
        self._open: OrderedDict[StreamKey, Stream] = OrderedDict()
        # Closed keys (their `digest`) -> closing time, in closing order: expired ones
        # pruned from the front, and the oldest forgotten early past `max_closed_bytes`.
        self._closed: OrderedDict[int, float] = OrderedDict()
        self._max_closed = max(1, max_closed_bytes // CLOSED_ENTRY_BYTES)
        self.forgotten_early = 0  # closed keys forgotten before their TTL (a metric)
        self._forgotten_logged = -1e18
        # Streams ended by a delivery failure (digest) -> when: their later records are
        # withdrawn from the sink while remembered (at least the delivery timeout). Never
        # forgotten early: that would let records follow their stream's terminal.
        self._failed: OrderedDict[int, float] = OrderedDict()
        self._failed_ttl = max(failed_ttl, closed_ttl)
        self._by_owner: dict[ReplyTarget, dict[StreamKey, None]] = {}  # insertion-ordered sets
        self._pending_chars = 0
        self._idle_timer: TimerHandle | None = None
        self._idle_when = 0.0
        # Open windows: (due, tie-break, stream); entries of windows flushed early stay
        # until they come up and are skipped (their stream's `due` no longer matches).
        self._windows: list[tuple[float, int, Stream]] = []
        self._live_windows = 0
        self._window_ids = itertools.count()
        self._tick: TimerHandle | None = None
        self._tick_at = 0.0
        self._tick_gap = self._interval / 10
        # Open and closed streams are counted in the memory budget (sidecar.budget).
        self._budget = budget if budget is not None else Budget()
        # False while the sink has no room (reads paused by backpressure): streams ended
        # then by a disconnect or the idle timeout are closed at once, but their flush and
        # synthesized `done` wait here, in order, until there is room (`drain_ending`), so
        # a burst of terminals respects --max-pending-bytes too.
        self._room = room if room is not None else lambda: True
        self._ending: OrderedDict[StreamKey, tuple[Stream, TerminalReason]] = OrderedDict()

    @property
    def open_count(self) -> int:
        """Streams without their terminal yet: open, or ended and waiting for room."""
        return len(self._open) + len(self._ending)

    @property
    def ending_count(self) -> int:
        """Streams ended whose flush and terminal wait for room in the sink."""
        return len(self._ending)

    @property
    def closed_count(self) -> int:
        """Closed keys still remembered (some may be past their TTL, pruned lazily)."""
        return len(self._closed)

    def window_bytes(self) -> int:
        """Estimated bytes of the deltas waiting in coalescing windows (read at scrape
        time, O(waiting deltas): nothing is counted per delta)."""
        streams = [s for due, _, s in self._windows if s.due == due]
        streams.extend(s for s, _ in self._ending.values())  # flushed when they go out
        return sum(window_entry_cost(len(u.raw)) for s in streams for u, _ack in s.pending)

    @property
    def pending_chars(self) -> int:
        """Text characters held in coalescing windows, over all streams."""
        return self._pending_chars

    @property
    def armed_timers(self) -> int:
        """Timer handles the table holds now (diagnostics and tests; O(open streams))."""
        return (self._tick is not None) + (self._idle_timer is not None)

    def now(self) -> float:
        """The table's clock, read once per socket read by the sessions."""
        return self._clock.time()

    # -- frames ----------------------------------------------------------------------------

    def handle(
        self,
        update: Update,
        owner: ReplyTarget,
        ack: AckToken | None,
        uid: int = 0,
        seq: int = 0,
        now: float | None = None,
    ) -> None:
        """Apply one accepted update line from `owner` (the connection), whose peer is
        `uid`, and which numbered the line `seq`. `ack` rides on the record that carries
        this line (None: the client wants no ack for it). `now`: the clock when the line
        was read (default: read it here).

        Raises StreamRejected (`stream_exists`, `stream_closed`, `stream_owned`); nothing
        is produced or changed then.
        """
        if now is None:
            now = self._clock.time()
        key = (update.task_id, update.message_id)
        kind = update.kind
        opened = self._open
        stream = opened.get(key)
        if stream is not None and stream.owner is owner and kind != "start":
            # The common case first: a frame of an open stream from its own connection.
            opened.move_to_end(key)
            stream.last_active = now
        elif stream is None:
            if self._ending and key in self._ending:
                self._finish_ending(key, now)  # its terminal before a reused key's records
            if self._closed and self._is_closed(digest(key), now):
                raise StreamRejected(
                    ErrorCode.STREAM_CLOSED, f"{_name(key)} has ended; no frame may follow"
                )
            stream = Stream(key, owner, uid, now)  # explicit or implicit open
            opened[key] = stream
            self._charge(stream, update)
            self._by_owner.setdefault(owner, {})[key] = None
        elif stream.uid != uid:
            raise StreamRejected(
                ErrorCode.STREAM_OWNED, f"{_name(key)} belongs to another peer (uid {stream.uid})"
            )
        elif kind == "start":
            raise StreamRejected(ErrorCode.STREAM_EXISTS, f"{_name(key)} is already open")
        else:
            opened.move_to_end(key)
            stream.last_active = now
            self._disown(stream)
            stream.owner = owner
            self._by_owner.setdefault(owner, {})[key] = None
        stream.last_seq = seq
        body = update.body
        stream.parent = body["parent_task_message"]
        stream.index = body.get("index")
        if kind == "delta":
            self._delta(stream, update, ack, now)
        elif kind == "start":
            self._produce(stream, "start", update.raw, ack, None)
        else:
            self._flush(stream, now)
            self._produce(stream, kind, update.raw, ack, "client")
            self._close(stream, now)
        if self._idle_timer is None and opened:
            self._arm_idle()

    def _delta(self, stream: Stream, update: Update, ack: AckToken | None, now: float) -> None:
        interval = self._interval
        last = stream.last_flush
        # `last + interval` exactly as the window's timer computes it, so the two agree.
        if last is None or interval == 0 or now >= last + interval:
            # Leading edge: the first delta, or the first after a quiet spell.
            if not stream.pending:
                # The common case needs no Pending, no merge: the line's bytes as sent.
                record = _line_record(stream, update, ack, now if last is None else None)
                stream.next_seq += 1
                stream.last_flush = now
                self._emit(record)
                return
            # The window's timer is due but has not run yet: what it holds goes first.
            stream.pending.append((update, ack))
            self._flush(stream, now)
            return
        stream.pending.append((update, ack))
        n = len(update.text)
        stream.pending_chars += n
        self._pending_chars += n
        if stream.pending_chars >= self._max_chars:
            self._flush(stream, now)
        elif stream.due is None:
            self._open_window(stream, last + interval)

    # -- the flush tick -----------------------------------------------------------------

    def _open_window(self, stream: Stream, due: float) -> None:
        stream.due = due
        self._live_windows += 1
        heapq.heappush(self._windows, (due, next(self._window_ids), stream))
        tick = self._tick
        if tick is None:
            self._arm_tick(due)
        elif due < self._tick_at:
            tick.cancel()
            self._arm_tick(due)

    def _close_window(self, stream: Stream) -> None:
        if stream.due is None:
            return
        stream.due = None
        self._live_windows -= 1
        if not self._live_windows:
            # Nothing pending anywhere: no tick, and no stale entries left behind.
            self._windows.clear()
            self._cancel_tick()

    def _arm_tick(self, when: float) -> None:
        self._tick_at = when
        self._tick = self._clock.call_at(when, self._on_tick)

    def _cancel_tick(self) -> None:
        tick = self._tick
        if tick is not None:
            self._tick = None
            tick.cancel()

    def _on_tick(self) -> None:
        self._tick = None
        now = self._clock.time()
        # Run a hair early (loop clock resolution) counts as on time; see _on_idle_timer.
        limit = max(now, self._tick_at)
        windows = self._windows
        opened = self._open
        while windows and windows[0][0] <= limit:
            due, _, stream = heapq.heappop(windows)
            if stream.due == due and opened.get(stream.key) is stream:
                self._flush(stream, now)
        while windows and windows[0][2].due != windows[0][0]:
            heapq.heappop(windows)  # flushed early: drop before choosing the next tick
        if windows and self._tick is None:
            self._arm_tick(max(windows[0][0], now + self._tick_gap))

    # -- ending streams ---------------------------------------------------------------------

    def end_owned_by(self, owner: ReplyTarget, reason: TerminalReason) -> int:
        """Flush and end (synthesized `done`) every open stream of `owner`; how many."""
        keys = self._by_owner.pop(owner, None)
        if not keys:
            return 0
        now = self._clock.time()
        ended = 0
        for key in keys:
            stream = self._open.get(key)
            if stream is not None and stream.owner is owner:
                self._end(stream, reason, now)
                ended += 1
        return ended

    def end_all(self, reason: TerminalReason) -> int:
        """Flush and end every open stream (shutdown), and produce the terminals still
        waiting for room: at shutdown nothing waits; how many were open."""
        now = self._clock.time()
        while self._ending:
            self._finish_ending(next(iter(self._ending)), now)
        streams = list(self._open.values())
        for stream in streams:
            self._end(stream, reason, now, wait=False)
        return len(streams)

    def drain_ending(self) -> bool:
        """Produce waiting terminals (oldest first) while the sink has room; True once
        none is left."""
        ending = self._ending
        if ending:
            now = self._clock.time()
            while ending and self._room():
                self._finish_ending(next(iter(ending)), now)
        return not ending

    def fail_stream(self, record: Record, reason: str) -> list[tuple[ReplyTarget, int]] | None:
        """`record` finally failed: end its stream right there (PROTOCOL §5, no silent
        holes). Returns who wrote into the stream, as (owner, line seq) to tell with a
        `delivery_failed` error; None if the stream was ended this way already.

        The `done` (`delivery_failed`) takes the failed record's `seq`: the sink withdraws
        the stream's later records (`withdrawn`), so none of them is produced after it.
        """
        key = (record.task_id, record.message_id)
        failed_key = digest(key)
        if failed_key in self._failed:
            return None  # its later records failing too, or its own terminal
        now = self._clock.time()
        self._prune_failed(now)
        self._failed[failed_key] = now
        self._budget.closed_streams += CLOSED_ENTRY_BYTES
        writers: list[tuple[ReplyTarget, int]] = []
        if record.writer is not None:
            writers.append((record.writer, record.line_seq))
        stream = self._open.get(key)
        ending = stream is None and key in self._ending
        if ending:
            stream = self._ending.pop(key)[0]  # ended already: this terminal replaces its own
        if stream is not None:
            if stream.owner is not record.writer:
                writers.append((stream.owner, stream.last_seq))
            self._drop_pending(stream, reason)
            stream.next_seq = record.stream_seq
            self._produce(
                stream, "done", _done_value(stream.parent, stream.index), None, DELIVERY_FAILED
            )
            if ending:
                self._release(stream)
            else:
                self._close(stream, now)
            return writers
        parent, index = _parent_and_index(record.value)
        self._emit(
            Record(
                task_id=record.task_id,
                message_id=record.message_id,
                kind="done",
                value=_done_value(parent, index),
                stream_seq=record.stream_seq,
                terminal_reason=DELIVERY_FAILED,
                writer_uid=record.writer_uid,
                writer=record.writer,
                line_seq=record.line_seq,
            )
        )
        if self._closed_ttl > 0 and failed_key not in self._closed:
            self._remember_closed(key, now)
        return writers

    def withdrawn(self, record: Record) -> bool:
        """True for a record the sink must not produce: its stream was ended by an earlier
        delivery failure (its own `delivery_failed` terminal excepted)."""
        return (
            bool(self._failed)
            and record.terminal_reason != DELIVERY_FAILED
            and digest((record.task_id, record.message_id)) in self._failed
        )

    def flush_all(self) -> None:
        """Flush every stream's pending deltas, leaving the streams open."""
        now = self._clock.time()
        for stream in list(self._open.values()):
            if stream.pending:
                self._flush(stream, now)

    def close(self) -> None:
        """Cancel every armed timer: the owner's last step, after end_all. Pending deltas
        of streams still open (none after end_all) are not flushed."""
        self._windows.clear()
        self._live_windows = 0
        for stream in self._open.values():
            stream.due = None
        self._cancel_tick()
        self._cancel_idle()

    def _end(
        self, stream: Stream, reason: TerminalReason, now: float, *, wait: bool = True
    ) -> None:
        """Flush, then a synthesized `done` with the stream's last parent and index. With no
        room in the sink (and `wait`), the stream closes now and both wait (`_ending`)."""
        if wait and not self._room():
            # Closed now; its state stays charged until the terminal goes out.
            self._close(stream, now, release=False)
            self._ending[stream.key] = (stream, reason)
            return
        self._terminate(stream, reason, now)
        self._close(stream, now)

    def _finish_ending(self, key: StreamKey, now: float) -> None:
        stream, reason = self._ending.pop(key)
        self._terminate(stream, reason, now)
        self._release(stream)

    def _terminate(self, stream: Stream, reason: TerminalReason, now: float) -> None:
        """What the stream's window holds, then its synthesized `done`, with its last
        parent and index."""
        self._flush(stream, now)
        self._produce(stream, "done", _done_value(stream.parent, stream.index), None, reason)

    # -- internals --------------------------------------------------------------------------

    def _charge(self, stream: Stream, update: Update) -> None:
        """Count a stream opening in the budget: its state, with the opening frame's
        parent (later frames of agentex carry one no larger). Once per stream."""
        try:
            size = len(orjson.dumps(update.body["parent_task_message"]))
        except orjson.JSONEncodeError:  # nested deeper than orjson writes: the line bounds it
            size = len(update.raw)
        key = stream.key
        stream.held = cost = open_stream_cost(size, len(key[0]) + len(key[1]))
        budget = self._budget
        budget.open_streams += cost
        if budget.open_streams > budget.max_open_streams:
            budget.pressure()

    def _release(self, stream: Stream) -> None:
        self._budget.open_streams -= stream.held
        stream.held = 0

    def _flush(self, stream: Stream, now: float) -> None:
        self._close_window(stream)
        pending = stream.pending
        if not pending:
            return
        # Detach before emitting: whatever `emit` does, no delta can go out twice.
        stream.pending = []
        self._pending_chars -= stream.pending_chars
        stream.pending_chars = 0
        stream.last_flush = now
        emit = self._emit
        if len(pending) == 1:  # the usual window at an LLM's pace: one line, as sent
            update, ack = pending[0]
            emit(_line_record(stream, update, ack, None))
            stream.next_seq += 1
            return
        for run in runs(pending):
            emit(
                delta_record(
                    run, stream.next_seq, stream.key, stream.uid, stream.owner, stream.last_seq
                )
            )
            stream.next_seq += 1

    def _drop_pending(self, stream: Stream, reason: str) -> None:
        """Discard what the window holds (after a hole it must not go out); the lines
        that wanted an ack hear why."""
        self._close_window(stream)
        pending, stream.pending = stream.pending, []
        self._pending_chars -= stream.pending_chars
        stream.pending_chars = 0
        for _, ack in pending:
            if ack is not None:
                ack.target.send_error(ack.seq, ErrorCode.DELIVERY_FAILED, reason)

    def _produce(
        self,
        stream: Stream,
        kind: UpdateKind,
        value: bytes,
        ack: AckToken | None,
        reason: TerminalReason | None,
    ) -> None:
        record = Record(
            task_id=stream.key[0],
            message_id=stream.key[1],
            kind=kind,
            value=value,
            stream_seq=stream.next_seq,
            terminal_reason=reason,
            acks=(ack,) if ack is not None else (),
            writer_uid=stream.uid,
            writer=stream.owner,
            line_seq=stream.last_seq,
        )
        stream.next_seq += 1
        self._emit(record)

    def _close(self, stream: Stream, now: float, *, release: bool = True) -> None:
        self._close_window(stream)
        if release and stream.held:
            self._release(stream)
        key = stream.key
        del self._open[key]
        self._disown(stream)
        self._remember_closed(key, now)
        if not self._open:
            self._cancel_idle()  # nothing left to expire: no timer at all

    def _remember_closed(self, key: StreamKey, now: float) -> None:
        if self._closed_ttl <= 0:
            return
        closed = self._closed
        if closed:
            self._prune_closed(now)  # amortized: each key is pruned once
            if len(closed) >= self._max_closed:
                self._forget_oldest(now)
        n = len(closed)
        closed[digest(key)] = now
        if len(closed) > n:
            self._budget.closed_streams += CLOSED_ENTRY_BYTES

    def _forget_oldest(self, now: float) -> None:
        """The table is at --max-closed-stream-bytes: the oldest key goes before its TTL
        (a frame for it would then open it again). Counted; logged once a minute."""
        self._closed.popitem(last=False)
        self._budget.closed_streams -= CLOSED_ENTRY_BYTES
        self.forgotten_early += 1
        if now - self._forgotten_logged >= _FORGOTTEN_LOG_SECONDS:
            self._forgotten_logged = now
            log.warning(
                "closed-stream table full (--max-closed-stream-bytes, %d streams): "
                "forgetting the oldest before --closed-stream-ttl; %d so far",
                self._max_closed,
                self.forgotten_early,
            )

    def _disown(self, stream: Stream) -> None:
        owned = self._by_owner.get(stream.owner)
        if owned is not None:
            owned.pop(stream.key, None)
            if not owned:
                del self._by_owner[stream.owner]

    def _is_closed(self, entry: int, now: float) -> bool:
        """Closed less than the TTL ago (`entry`: the stream's `digest`). Expired keys are
        pruned when streams close and on the idle sweep, not on every frame; one met here
        is forgotten now."""
        at = self._closed.get(entry)
        if at is None:
            return False
        if at > now - self._closed_ttl:
            return True
        del self._closed[entry]
        self._budget.closed_streams -= CLOSED_ENTRY_BYTES
        return False

    def _prune_failed(self, now: float) -> None:
        self._budget.closed_streams -= _prune(self._failed, now - self._failed_ttl)

    def _prune_closed(self, now: float) -> None:
        self._budget.closed_streams -= _prune(self._closed, now - self._closed_ttl)

    def _arm_idle(self) -> None:
        # Armed at the front's deadline. If the front gets a frame meanwhile, the timer
        # fires once early and re-arms: cheaper than re-arming on every frame.
        front = next(iter(self._open.values()))
        self._idle_when = when = front.last_active + self._idle_timeout
        self._idle_timer = self._clock.call_at(when, self._on_idle_timer)

    def _cancel_idle(self) -> None:
        timer = self._idle_timer
        if timer is not None:
            self._idle_timer = None
            timer.cancel()

    def _on_idle_timer(self) -> None:
        self._idle_timer = None
        now = self._clock.time()
        # A loop may run a timer a hair before its time (asyncio's clock resolution,
        # uvloop's millisecond rounding): count it as on time, or it would re-arm for the
        # same instant and spin until the clock catches up.
        limit = max(now, self._idle_when)
        if self._closed:
            self._prune_closed(now)
        opened = self._open
        idle = self._idle_timeout
        while opened:
            front = next(iter(opened.values()))
            if front.last_active + idle > limit:
                break
            self._end(front, "idle_timeout", now)
        if opened and self._idle_timer is None:
            self._arm_idle()


def _prune(table: OrderedDict[int, float], limit: float) -> int:
    """Forget the entries remembered since `limit` or earlier (the front); their bytes."""
    n = 0
    while table:
        key, at = next(iter(table.items()))
        if at > limit:
            break
        del table[key]
        n += 1
    return n * CLOSED_ENTRY_BYTES


def _line_record(
    stream: Stream, update: Update, ack: AckToken | None, first_delta_at: float | None
) -> Record:
    """The record of one delta line alone: its bytes as sent, the stream's next seq."""
    key = stream.key
    # Positional: this is the data path's hottest constructor call.
    return Record(
        key[0],
        key[1],
        "delta",
        update.raw,
        stream.next_seq,
        None,
        (ack,) if ack is not None else (),
        1,
        first_delta_at,
        stream.uid,
        stream.owner,
        stream.last_seq,
    )


def _name(key: StreamKey) -> str:
    """A stream as messages name it: both ids quoted, bounded and escaped."""
    return f"stream {quote(key[0])}/{quote(key[1])}"


def _done_value(parent: Any, index: Any) -> bytes:
    return exact(orjson.dumps({"type": "done", "parent_task_message": parent, "index": index}))


def _parent_and_index(value: bytes) -> tuple[Any, Any]:
    """The parent_task_message and index of a produced record's value (cold path)."""
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None, None
    if type(obj) is not dict:
        return None, None
    return obj.get("parent_task_message"), obj.get("index")
