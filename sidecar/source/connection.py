"""One client connection: bytes in, frames to the stream table, replies out.

Everything here runs synchronously inside `data_received`, so the lines of one read
are handled completely, in order, before anything else can run; there is no per-frame
task to cancel or lose.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, cast

from sidecar.model import TERMINAL_KINDS, AckMode, AckToken, Hello
from sidecar.transform.table import StreamRejected
from sidecar_client.protocol import (
    ErrorCode,
    FrameError,
    LineFramer,
    Oversize,
    decode_frame,
    encode_ack,
    encode_error,
)

if TYPE_CHECKING:
    from sidecar.source.hub import Hub

log = logging.getLogger("sidecar.source")


class Connection(asyncio.Protocol):
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.framer = LineFramer(hub.config.max_frame_bytes)
        self.acks: AckMode = "none"
        self.client: str | None = None
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.eof = False
        # Lines whose ack (or delivery_failed) is still owed: after the client half-closes,
        # the connection stays open for writing until they are all answered.
        self.awaiting: set[int] = set()

    # -- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but provide its API.
        self.transport = cast(asyncio.Transport, transport)
        if not self.hub.register(self):
            self.closed = True
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        self.hub.metrics.received_bytes += len(data)
        for event in self.framer.feed(data):
            if isinstance(event, Oversize):
                self.hub.metrics.frames["invalid"] += 1
                self.send_error(
                    event.seq,
                    ErrorCode.FRAME_TOO_LARGE,
                    f"line longer than --max-frame-bytes {self.hub.config.max_frame_bytes}; "
                    "skipped",
                )
            else:
                self._handle_line(event.seq, event.data)

    def eof_received(self) -> bool:
        # The client has finished sending: its streams end now, as on a disconnect, but
        # the replies it is still owed are delivered before our side closes.
        self.eof = True
        if self.framer.close():
            log.info("discarded a partial line at end of input (client %s)", self.client)
        self.hub.end_streams_of(self)
        return bool(self.awaiting)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.framer.close():
            log.info("discarded a partial line at disconnect (client %s)", self.client)
        self.hub.unregister(self)

    # -- frames --------------------------------------------------------------------------

    def _handle_line(self, seq: int, data: bytes) -> None:
        hub = self.hub
        try:
            frame = decode_frame(data)
        except FrameError as exc:
            hub.metrics.frames["invalid"] += 1
            self.send_error(seq, exc.code, exc.message)
            return
        if isinstance(frame, Hello):
            hub.metrics.frames["hello"] += 1
            if seq != 1:
                self.send_error(
                    seq, ErrorCode.INVALID_FRAME, "hello is only allowed as the first line"
                )
                return
            self.acks, self.client = frame.acks, frame.client
            return
        hub.metrics.frames[frame.kind] += 1
        if hub.draining:
            self.send_error(seq, ErrorCode.SHUTTING_DOWN, "the sidecar is shutting down")
            return
        ack = None
        if self.acks == "all" or (self.acks == "terminal" and frame.kind in TERMINAL_KINDS):
            ack = AckToken(self, seq)
        try:
            hub.table.handle(frame, self, ack)
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
        errors = self.hub.metrics.errors
        errors[code] = errors.get(code, 0) + 1
        self._reply(encode_error(seq, code, message))
        self._answered(seq)

    def _answered(self, seq: int) -> None:
        self.awaiting.discard(seq)
        if self.eof and not self.awaiting:
            self.close()

    def _reply(self, line: bytes) -> None:
        t = self.transport
        if t is None or self.closed or t.is_closing():
            return
        # Never block ingest on a client that does not read its replies: past the bound
        # they are dropped and counted.
        if t.get_write_buffer_size() > self.hub.config.max_reply_bytes:
            self.hub.metrics.replies_dropped += 1
            return
        t.write(line)

    # -- control -------------------------------------------------------------------------

    def pause(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()
