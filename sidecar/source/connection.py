"""The asyncio adapter of a `Session`: a Protocol that reads the peer's credentials,
admits or refuses it, and moves bytes between the transport and the session.

All protocol logic is in `source.session`; what is here is only I/O: the transport,
reading pauses for backpressure, and the bound on unread replies.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import cast

from sidecar.metrics import Metrics
from sidecar.source.hub import Hub
from sidecar.source.peer import Admission, peer_of
from sidecar.source.session import Intake, Session

log = logging.getLogger("sidecar.source")


class Connection(asyncio.Protocol):
    def __init__(
        self, hub: Hub[Connection], intake: Intake, admission: Admission, *, max_reply_bytes: int
    ) -> None:
        self.hub = hub
        self.intake = intake
        self.admission = admission
        self.max_reply_bytes = max_reply_bytes
        self.transport: asyncio.Transport | None = None
        self.session: Session | None = None
        self.closed = False

    @property
    def metrics(self) -> Metrics:
        return self.intake.metrics

    # -- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but provide its API.
        self.transport = t = cast(asyncio.Transport, transport)
        sock = t.get_extra_info("socket")
        try:
            peer = peer_of(cast(socket.socket, sock))
        except (OSError, AttributeError) as exc:
            log.warning("refused a connection: cannot read its peer credentials (%r)", exc)
            self.metrics.connections_refused += 1
            self._abort()
            return
        if not self.admission.admits(peer):
            log.warning("refused a connection from %s: not in --allowed-uids/--allowed-gids", peer)
            self.metrics.connections_refused += 1
            self._abort()
            return
        self.session = Session(peer, self.intake, self)
        self.hub.register(self)

    def data_received(self, data: bytes) -> None:
        if self.session is not None:
            self.session.receive_data(data)

    def eof_received(self) -> bool:
        return self.session.receive_eof() if self.session is not None else False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.session is not None:
            self.session.connection_lost()
            self.hub.unregister(self)

    # -- the session's outlet ------------------------------------------------------------

    def write(self, data: bytes) -> None:
        t = self.transport
        if t is None or self.closed or t.is_closing():
            return
        # Never block ingest on a client that does not read its replies: past the bound
        # they are dropped and counted.
        if t.get_write_buffer_size() > self.max_reply_bytes:
            self.metrics.replies_dropped += 1
            return
        t.write(data)

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()

    # -- the hub's controls --------------------------------------------------------------

    def pause(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def _abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()
