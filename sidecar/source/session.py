"""One connection's protocol, sans-IO (after h11): bytes in; replies, records and
ownership decisions out; the peer's identity given as an input.

A `Session` never touches a socket or the event loop. The asyncio adapter
(`source.connection`) feeds it what it reads and gives it an `Outlet` to write replies
to and close; the fuzz and property tests drive it the same way with a list for an
outlet. Records go out through the shared stream table, which decides ownership by the
peer's uid; replies for lines still waiting on Kafka come back later through
`send_ack` / `send_error` (the session is the lines' `ReplyTarget`).

Everything a line causes happens inside `receive_data`, synchronously and in order:
there is no per-frame task to cancel or lose.
"""

from __future__ import annotations

import logging
from typing import Protocol

from sidecar.budget import Budget
from sidecar.metrics import Metrics
from sidecar.model import TERMINAL_KINDS, AckMode, AckToken, Hello
from sidecar.quoting import quote
from sidecar.source.peer import Peer
from sidecar.transform.table import StreamRejected, StreamTable
from sidecar_client.protocol import (
    ErrorCode,
    FrameDecoder,
    FrameError,
    LineFramer,
    encode_ack,
    encode_error,
)

log = logging.getLogger("sidecar.source")


class Intake:
    """What every session shares: the stream table, metrics and limits, and whether the
    sidecar is draining."""

    def __init__(
        self,
        table: StreamTable,
        metrics: Metrics,
        *,
        max_frame_bytes: int,
        end_on_disconnect: bool = True,
    ) -> None:
        self.table = table
        self.metrics = metrics
        self.max_frame_bytes = max_frame_bytes
        self.end_on_disconnect = end_on_disconnect
        self.draining = False
        # One decoder for every connection: a stream's delta lines decode from a template
        # (sidecar_client.protocol.templates), whichever connection writes them.
        self.decoder = FrameDecoder()
        # Partial lines are charged to the memory budget, whose `pressure` re-checks the
        # limits (the server shares the sink's budget).
        self.budget = Budget()
        # What unfinished lines may hold together (the server sets half of
        # --max-pending-bytes): past it the line that grew is skipped, so half lines of
        # clients that stopped writing can never hold every reader paused on their own.
        self.max_partial_bytes = 1 << 62


class Outlet(Protocol):
    """Where a session's output goes: the adapter's transport, or a test's recorder."""

    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...


class Session:
    def __init__(self, peer: Peer, intake: Intake, outlet: Outlet) -> None:
        self.peer = peer
        self.intake = intake
        self.outlet = outlet
        self.framer = LineFramer(intake.max_frame_bytes)
        self.acks: AckMode = "none"
        self.client: str | None = None
        self.eof = False
        self.closed = False
        # Lines whose ack (or delivery_failed) is still owed: after the client half-closes,
        # the connection stays open for writing until they are all answered.
        self.awaiting: set[int] = set()

    def __str__(self) -> str:
        client = f" client {quote(self.client)}" if self.client is not None else ""
        return f"{self.peer}{client}"

    # -- input -------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Handle every complete line in `data`, in order; charge what is left of an
        unfinished line to the memory budget."""
        framer = self.framer
        before = framer.buffered
        seq = framer.seq
        items = framer.split(data)
        if items:
            # One clock reading for the whole read: its lines arrived together.
            now = self.intake.table.now()
            handle = self._handle_line
            for item in items:
                seq += 1
                if type(item) is bytes:
                    handle(seq, item, now)
                else:
                    self.intake.metrics.frames["invalid"] += 1
                    self.send_error(
                        seq,
                        ErrorCode.FRAME_TOO_LARGE,
                        f"line longer than --max-frame-bytes {self.intake.max_frame_bytes}; "
                        "skipped",
                    )
        self._charge_partial(framer.buffered - before)

    def _charge_partial(self, grown: int) -> None:
        """The unfinished line held `grown` bytes more (less, once finished or dropped).

        Unfinished lines together may hold at most `max_partial_bytes` (half of
        --max-pending-bytes): past it the line that grew is skipped to its end and
        answered `frame_too_large`, and the connection goes on with its next line. Paused
        reads wait for pending records, which Kafka drains; half lines of clients that
        stopped writing would never go, and below half they cannot keep reads paused
        (reads resume at three quarters)."""
        if not grown:
            return
        intake = self.intake
        budget = intake.budget
        budget.partial_lines += grown
        if grown > 0 and budget.partial_lines > intake.max_partial_bytes:
            budget.partial_lines -= self.framer.buffered
            seq = self.framer.abandon()
            intake.metrics.frames["invalid"] += 1
            self.send_error(
                seq,
                ErrorCode.FRAME_TOO_LARGE,
                f"line skipped: unfinished lines fill their share of --max-pending-bytes "
                f"({intake.max_partial_bytes} bytes); write each line whole",
            )
        budget.pressure()

    def _discard_partial(self) -> bool:
        """End of input: drop a partial line (never handed on as a frame) and uncharge
        it; True if there was one."""
        held = self.framer.buffered
        partial = self.framer.close()
        self._charge_partial(-held)
        return partial

    def receive_eof(self) -> bool:
        """The client has finished sending: its streams end now, as on a disconnect, but
        the replies it is still owed are delivered first. True: keep the connection open
        for them (the session closes its outlet once they are all sent)."""
        self.eof = True
        if self._discard_partial():
            log.info("discarded a partial line at end of input (%s)", self)
        self._end_streams()
        return bool(self.awaiting)

    def connection_lost(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._discard_partial():
            log.info("discarded a partial line at disconnect (%s)", self)
        self._end_streams()

    def _end_streams(self) -> None:
        """A client that disconnected (or half-closed) ends its open streams (§6)."""
        if self.intake.end_on_disconnect:
            self.intake.table.end_owned_by(self, "disconnect")

    # -- frames --------------------------------------------------------------------------

    def _handle_line(self, seq: int, data: bytes, now: float) -> None:
        intake = self.intake
        metrics = intake.metrics
        try:
            frame = intake.decoder.decode(data)
        except FrameError as exc:
            metrics.frames["invalid"] += 1
            self.send_error(seq, exc.code, exc.message)
            return
        if isinstance(frame, Hello):
            metrics.frames["hello"] += 1
            if seq != 1:
                self.send_error(
                    seq, ErrorCode.INVALID_FRAME, "hello is only allowed as the first line"
                )
                return
            self.acks, self.client = frame.acks, frame.client
            return
        kind = frame.kind
        metrics.frames[kind] += 1
        if intake.draining:
            self.send_error(seq, ErrorCode.SHUTTING_DOWN, "the sidecar is shutting down")
            return
        acks = self.acks
        ack = None
        if acks != "none" and (acks == "all" or kind in TERMINAL_KINDS):
            ack = AckToken(self, seq)
        try:
            intake.table.handle(frame, self, ack, self.peer.uid, seq, now)
        except StreamRejected as exc:
            self.send_error(seq, exc.code, exc.message)
            return
        if ack is not None:
            self.awaiting.add(seq)

    # -- replies (model.ReplyTarget) -----------------------------------------------------

    def send_ack(self, seq: int, partition: int, offset: int) -> None:
        self._reply(encode_ack(seq, partition, offset))
        self._answered(seq)

    def send_error(self, seq: int, code: ErrorCode, message: str) -> None:
        errors = self.intake.metrics.errors
        errors[code] = errors.get(code, 0) + 1
        self._reply(encode_error(seq, code, message))
        self._answered(seq)

    def _answered(self, seq: int) -> None:
        self.awaiting.discard(seq)
        if self.eof and not self.awaiting and not self.closed:
            self.outlet.close()

    def _reply(self, line: bytes) -> None:
        if not self.closed:
            self.outlet.write(line)
