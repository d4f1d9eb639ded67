"""Newline framing for the socket, sans-IO: bytes in, numbered lines out (PROTOCOL §2).

Every line gets a sequence number counting from 1, whatever it holds, including an
empty line (it will fail to decode as `invalid_json`). A line longer than
`max_frame_bytes` (not counting its newline) is reported once, as `Oversize`, as soon as
the limit is passed, and its remaining bytes are skipped up to the newline without being
held: one bad writer cannot make the sidecar buffer megabytes. Only the incomplete tail
of the current line is buffered, and never more than `max_frame_bytes` of it.

A trailing `\\r` is left in the line: JSON allows it as trailing whitespace, so a CRLF
client still decodes, and the framer never has to guess what a byte means.

Feeding the same bytes in any chunking yields the same events, except for
`Oversize.size_so_far`, which is how much of the line had been seen when it was reported.
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
    # Bytes of the line seen when the limit was passed: a lower bound on its length.
    size_so_far: int


Event = Line | Oversize


class LineFramer:
    """Splits a byte stream into numbered lines.

    `feed` returns the events completed by a chunk; `close` ends the input and discards a
    partial line (a half line at disconnect is never handed on as a frame).
    """

    __slots__ = ("_buf", "_skipping", "max_frame_bytes", "seq")

    def __init__(self, max_frame_bytes: int) -> None:
        if max_frame_bytes < 1:
            raise ValueError(f"max_frame_bytes must be at least 1, got {max_frame_bytes}")
        self.max_frame_bytes = max_frame_bytes
        self.seq = 0  # the last sequence number handed out
        self._buf = bytearray()  # the incomplete tail of the current line
        self._skipping = False  # inside an over-long line, dropping bytes to its newline

    @property
    def buffered(self) -> int:
        """Bytes held for the incomplete line (at most `max_frame_bytes`)."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Event]:
        """The events completed by `data`, in order."""
        seq = self.seq
        events: list[Event] = []
        for item in self.split(data):
            seq += 1
            if isinstance(item, Oversize):
                events.append(item)
            else:
                events.append(Line(seq, item))
        return events

    def split(self, data: bytes) -> list[bytes | Oversize]:
        """`feed` for the server's hot path: a whole line comes as its bytes, with no
        object around it. Every item takes the next sequence number, so the i-th item
        (from 1) of a call is line `seq + i`, `seq` being the framer's before the call;
        an `Oversize` also carries its own."""
        events: list[bytes | Oversize] = []
        limit = self.max_frame_bytes
        if self._skipping or self._buf:
            nl = data.find(b"\n")
            if nl < 0:
                if not self._skipping:
                    self._hold(data, events)
                return events
            if self._skipping:
                self._skipping = False
            else:
                self.seq += 1
                size = len(self._buf) + nl
                if size > limit:
                    events.append(Oversize(self.seq, size))
                else:
                    events.append(b"".join((self._buf, data[:nl])))
                self._buf.clear()
            # Rare (once per chunk at most): copy the rest so the hot path below can split.
            data = data[nl + 1 :]
        # The hot path: one C-level split for all the whole lines of the chunk.
        parts = data.split(b"\n")
        tail = parts.pop()
        if max(map(len, parts), default=0) <= limit:
            events += parts  # every line within the limit: the common case, no loop
            self.seq += len(parts)
        else:
            seq = self.seq
            for part in parts:
                seq += 1
                events.append(part if len(part) <= limit else Oversize(seq, len(part)))
            self.seq = seq
        if tail:
            self._hold(tail, events)
        return events

    def abandon(self) -> int:
        """Drop the unfinished line held now and skip the rest of it, up to its newline;
        returns its sequence number (0: no line was held). For a server that can no
        longer hold it (the line is then answered with an error, like an over-long one)."""
        if not self._buf:
            return 0
        self.seq += 1
        self._buf.clear()
        self._skipping = True
        return self.seq

    def close(self) -> bool:
        """End of input: drop a partial line; True if there was one.

        An over-long line cut short by the end of input counts as partial too (it was
        already reported as `Oversize`). The framer is reset; numbering carries on.
        """
        partial = bool(self._buf) or self._skipping
        self._buf.clear()
        self._skipping = False
        return partial

    def _hold(self, tail: bytes, events: list[bytes | Oversize]) -> None:
        """Buffer the start of an unfinished line, or report it if it is too long already."""
        size = len(self._buf) + len(tail)
        if size > self.max_frame_bytes:
            self.seq += 1
            events.append(Oversize(self.seq, size))
            self._buf.clear()
            self._skipping = True
        else:
            self._buf += tail
