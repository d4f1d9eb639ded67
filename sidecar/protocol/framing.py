"""Newline framing for the socket, sans-IO: bytes in, numbered lines out.

Every line gets a sequence number counting from 1, whatever it holds. A line longer than
`max_frame_bytes` is reported once and then skipped up to its newline without being held
in memory, so one bad writer cannot make the sidecar buffer megabytes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Line:
    seq: int
    data: bytes  # without the trailing newline


@dataclass(frozen=True, slots=True)
class Oversize:
    seq: int


Event = Line | Oversize


class LineFramer:
    def __init__(self, max_frame_bytes: int) -> None:
        self.max_frame_bytes = max_frame_bytes
        self.seq = 0  # the last sequence number handed out
        self._buf = bytearray()  # the incomplete tail of the current line
        self._skipping = False  # inside an over-long line, dropping bytes to its newline

    def feed(self, data: bytes) -> list[Event]:
        events: list[Event] = []
        start = 0
        end = len(data)
        if self._skipping:
            nl = data.find(b"\n")
            if nl < 0:
                return events
            self._skipping = False
            start = nl + 1
        if self._buf:
            nl = data.find(b"\n", start)
            if nl < 0:
                self._append_tail(data, start, end, events)
                return events
            self._buf += data[start:nl]
            self._emit(bytes(self._buf), events)
            self._buf.clear()
            start = nl + 1
        # The hot path: whole lines inside this chunk, found with bytes.find.
        while start < end:
            nl = data.find(b"\n", start)
            if nl < 0:
                self._append_tail(data, start, end, events)
                break
            self._emit(data[start:nl], events)
            start = nl + 1
        return events

    def close(self) -> bool:
        """End of input: drop a partial line; True if there was one."""
        partial = bool(self._buf) or self._skipping
        self._buf.clear()
        self._skipping = False
        return partial

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def _emit(self, line: bytes, events: list[Event]) -> None:
        self.seq += 1
        if len(line) > self.max_frame_bytes:
            events.append(Oversize(self.seq))
        else:
            events.append(Line(self.seq, line))

    def _append_tail(self, data: bytes, start: int, end: int, events: list[Event]) -> None:
        if len(self._buf) + (end - start) > self.max_frame_bytes:
            # Already too long before its newline: report it now, hold nothing more.
            self.seq += 1
            events.append(Oversize(self.seq))
            self._buf.clear()
            self._skipping = True
        else:
            self._buf += data[start:end]
