"""The stream table: which streams are open, closed or idle, and their coalescing (§2.2,
§4, §6).

Synchronous and driven by the event loop's clock. No stream has a task; a stream with
pending deltas has one timer handle, and a stream with nothing pending has none. Idle
expiry uses a single table-wide timer at the earliest deadline. A terminal flushes the
stream's pending deltas and emits itself in the same call, so "deltas, then exactly one
terminal" holds by construction, and no close path has an await to be cancelled at.

A frame for an open stream from another connection is accepted and moves the stream
to that connection: an agent that reconnects (with `--on-disconnect keep`) takes its
streams with it.
"""

from __future__ import annotations

from functools import partial

import orjson

from sidecar.model import (
    AckToken,
    Clock,
    Emit,
    Record,
    StreamKey,
    TerminalReason,
    TimerHandle,
    Update,
)
from sidecar.transform.merge import Pending, delta_record, merge_runs
from sidecar.transform.stream import Stream


class StreamRejected(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class StreamTable:
    def __init__(
        self,
        *,
        clock: Clock,
        emit: Emit,
        flush_interval: float,
        max_buffered_chars: int,
        closed_ttl: float,
        idle_timeout: float,
    ) -> None:
        self.clock = clock
        self.emit = emit
        self.flush_interval = flush_interval
        self.max_buffered_chars = max_buffered_chars
        self.closed_ttl = closed_ttl
        self.idle_timeout = idle_timeout
        # Open streams in last-activity order (a frame moves its stream to the end).
        self._open: dict[StreamKey, Stream] = {}
        # Closed keys in closing order, so expired ones are pruned from the front.
        self._closed: dict[StreamKey, float] = {}
        self._by_owner: dict[object, set[StreamKey]] = {}
        self._idle_timer: TimerHandle | None = None

    @property
    def open_count(self) -> int:
        return len(self._open)

    @property
    def closed_count(self) -> int:
        return len(self._closed)

    @property
    def pending_chars(self) -> int:
        return sum(s.pending_chars for s in self._open.values())

    @property
    def armed_timers(self) -> int:
        """Timer handles this table holds now (the idle-cost tests count them)."""
        n = sum(s.timer is not None for s in self._open.values())
        return n + (self._idle_timer is not None)

    # -- frames ----------------------------------------------------------------------------

    def handle(self, update: Update, owner: object, ack: AckToken | None) -> None:
        """Apply one accepted update; raises StreamRejected (nothing produced) if it breaks
        the stream rules."""
        now = self.clock.time()
        self._prune_closed(now)
        key = update.key
        stream = self._open.pop(key, None)
        if stream is None:
            if key in self._closed:
                raise StreamRejected(
                    "stream_closed", f"stream {key[0]}/{key[1]} has ended; no frame may follow"
                )
            stream = Stream(key, owner, now)
            self._by_owner.setdefault(owner, set()).add(key)
        elif update.kind == "start":
            self._open[key] = stream
            raise StreamRejected("stream_exists", f"stream {key[0]}/{key[1]} is already open")
        elif stream.owner is not owner:
            self._move(stream, owner)
        self._open[key] = stream  # (re)inserted last: the most recently active
        stream.last_active = now
        body = update.body
        stream.parent = body["parent_task_message"]
        stream.index = body.get("index")
        kind = update.kind
        if kind == "delta":
            self._delta(stream, Pending(update, ack), now)
        elif kind == "start":
            self._record(stream, "start", update.raw, [ack] if ack else [])
        else:
            self._flush(stream, now)
            self._record(stream, kind, update.raw, [ack] if ack else [], reason="client")
            self._close(stream, now)
        if self._idle_timer is None and self._open:
            self._arm_idle()

    def _delta(self, stream: Stream, p: Pending, now: float) -> None:
        first = not stream.seen_delta
        stream.seen_delta = True
        interval = self.flush_interval
        stream.pending.append(p)
        stream.pending_chars += len(p.update.text)
        if interval <= 0 or stream.last_flush is None or now - stream.last_flush >= interval:
            # Leading edge: the first delta, or the first after a quiet spell (with
            # anything a due-but-not-yet-run timer still holds) goes out at once.
            last = self._flush(stream, now)
            if first and last is not None:
                last.first_delta_at = now
        elif stream.pending_chars >= self.max_buffered_chars:
            self._flush(stream, now)
        elif stream.timer is None:
            stream.timer = self.clock.call_at(
                stream.last_flush + interval, partial(self._on_flush_timer, stream)
            )

    def _on_flush_timer(self, stream: Stream) -> None:
        stream.timer = None
        if self._open.get(stream.key) is stream:
            self._flush(stream, self.clock.time())

    # -- ending streams ---------------------------------------------------------------------

    def end_owned_by(self, owner: object, reason: TerminalReason) -> int:
        keys = self._by_owner.pop(owner, set())
        now = self.clock.time()
        ended = 0
        for key in keys:
            stream = self._open.get(key)
            if stream is not None:
                self._end(stream, reason, now)
                ended += 1
        return ended

    def end_all(self, reason: TerminalReason) -> int:
        now = self.clock.time()
        streams = list(self._open.values())
        for stream in streams:
            self._end(stream, reason, now)
        return len(streams)

    def flush_all(self) -> None:
        now = self.clock.time()
        for stream in list(self._open.values()):
            self._flush(stream, now)

    def close(self) -> None:
        """Cancel every armed timer (the server's last step)."""
        for stream in self._open.values():
            stream.cancel_timer()
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def _end(self, stream: Stream, reason: TerminalReason, now: float) -> None:
        """Flush, then the synthesized `done` carrying the stream's last parent and index."""
        self._flush(stream, now)
        value = orjson.dumps(
            {"type": "done", "parent_task_message": stream.parent, "index": stream.index}
        )
        self._record(stream, "done", value, [], reason=reason)
        self._close(stream, now)

    # -- internals --------------------------------------------------------------------------

    def _flush(self, stream: Stream, now: float) -> Record | None:
        stream.cancel_timer()
        if not stream.pending:
            return None
        record = None
        for run in merge_runs(stream.pending):
            record = delta_record(run, stream.next_seq)
            stream.next_seq += 1
            self.emit(record)
        stream.pending = []
        stream.pending_chars = 0
        stream.last_flush = now
        return record

    def _record(
        self,
        stream: Stream,
        kind: str,
        value: bytes,
        acks: list[AckToken],
        reason: TerminalReason | None = None,
    ) -> None:
        record = Record(
            task_id=stream.key[0],
            message_id=stream.key[1],
            kind=kind,  # type: ignore[arg-type]  # one of the update kinds, checked upstream
            value=value,
            stream_seq=stream.next_seq,
            terminal_reason=reason,
            acks=acks,
        )
        stream.next_seq += 1
        self.emit(record)

    def _close(self, stream: Stream, now: float) -> None:
        stream.cancel_timer()
        self._open.pop(stream.key, None)
        owned = self._by_owner.get(stream.owner)
        if owned is not None:
            owned.discard(stream.key)
            if not owned:
                del self._by_owner[stream.owner]
        if self.closed_ttl > 0:
            self._closed[stream.key] = now
        if not self._open and self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def _move(self, stream: Stream, owner: object) -> None:
        old = self._by_owner.get(stream.owner)
        if old is not None:
            old.discard(stream.key)
            if not old:
                del self._by_owner[stream.owner]
        stream.owner = owner
        self._by_owner.setdefault(owner, set()).add(stream.key)

    def _prune_closed(self, now: float) -> None:
        closed = self._closed
        limit = now - self.closed_ttl
        while closed:
            key = next(iter(closed))
            if closed[key] > limit:
                break
            del closed[key]

    def _arm_idle(self) -> None:
        oldest = next(iter(self._open.values()))
        when = oldest.last_active + self.idle_timeout
        self._idle_timer = self.clock.call_at(when, self._on_idle_timer)

    def _on_idle_timer(self) -> None:
        self._idle_timer = None
        now = self.clock.time()
        self._prune_closed(now)
        while self._open:
            oldest = next(iter(self._open.values()))
            if oldest.last_active + self.idle_timeout > now:
                break
            self._end(oldest, "idle_timeout", now)
        if self._open and self._idle_timer is None:
            self._arm_idle()
