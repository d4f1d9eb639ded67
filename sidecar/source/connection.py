"""The asyncio adapter of a `Session`: a Protocol that reads the peer's credentials,
admits or refuses it, and moves bytes between the transport and the session.

All protocol logic is in `source.session`; what is here is only I/O: the transport,
reading pauses for backpressure, and the bound on unread replies.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import socket
import time
from typing import cast

from sidecar.metrics import Metrics
from sidecar.source.hub import Hub
from sidecar.source.peer import Admission, peer_of
from sidecar.source.session import Intake, Session

log = logging.getLogger("sidecar.source")

# File descriptors kept free for everything but agent connections: Kafka connections,
# the ops endpoint, log files, the event loop's own.
FD_RESERVE = 64


def fd_ceiling() -> int:
    """The highest file descriptor a new connection may have: the soft RLIMIT_NOFILE less
    a reserve. The kernel hands out the lowest free number, so a connection's fd number
    is how many are open. Past it a new connection is closed at once: uvloop's listener
    (libuv) closes itself for good when accept() fails with EMFILE, so the sidecar must
    never let it get there."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1 << 20
    return max(soft - min(FD_RESERVE, soft // 4), 1)


_MAX_FD = fd_ceiling()
_refused_logged = [-1e9]  # when the fd_exhausted line was last logged (once a second)


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
        # Backpressure came while this connection was in the middle of a line: it reads on
        # until that line is complete, then pauses (see pause()); what it read past the
        # line's end waits in `stash` until reads resume.
        self.finishing = False
        self.stash = b""

    @property
    def metrics(self) -> Metrics:
        return self.intake.metrics

    # -- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but provide its API.
        self.transport = t = cast(asyncio.Transport, transport)
        sock = t.get_extra_info("socket")
        if sock is not None and sock.fileno() >= _MAX_FD:
            self._refuse_no_fds(sock.fileno())
            return
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
        self.metrics.received_bytes += len(data)
        if self.finishing:
            # Only the end of the unfinished line; the rest waits for reads to resume.
            end = data.find(b"\n") + 1
            if 0 < end < len(data):
                self.stash = data[end:]
                self.intake.budget.stashed += len(self.stash)
                data = data[:end]
        self._receive(data)
        if self.finishing:
            self.pause()

    def _receive(self, data: bytes) -> None:
        if self.session is not None:
            self.session.receive_data(data)

    def eof_received(self) -> bool:
        if self.session is None:
            return False
        self._drop_partial()
        return self.session.receive_eof()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.session is not None:
            self._drop_partial()
            self.session.connection_lost()
            self.hub.unregister(self)

    def _drop_partial(self) -> None:
        """The end of input: what waited past a finished line goes (the session uncharges
        its own partial line)."""
        self.intake.budget.stashed -= len(self.stash)
        self.stash = b""

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
        """Backpressure: stop reading. A connection in the middle of a line reads on
        until that line is complete (and no further: see data_received): its half line
        is charged to the budget, and paused, it could never finish, so many half lines
        would hold every reader paused."""
        if self.transport is None or self.closed:
            return
        if self.session is not None and self.session.framer.buffered:
            self.finishing = True
            return
        self.finishing = False
        self.transport.pause_reading()

    def resume(self) -> None:
        self.finishing = False
        if self.transport is None or self.closed:
            return
        if self.stash:
            # Soon, not now: handling it may pause the hub again while it resumes the rest.
            asyncio.get_running_loop().call_soon(self._replay)
        else:
            self.transport.resume_reading()

    def _replay(self) -> None:
        """Handle what was read past a line finished under backpressure, then read on."""
        if self.transport is None or self.closed or self.hub.paused or not self.stash:
            return
        data, self.stash = self.stash, b""
        self.intake.budget.stashed -= len(data)
        self._receive(data)
        if self.finishing or not self.hub.paused:
            # Paused again mid-line: read on to finish it (data_received cuts there).
            self.transport.resume_reading()

    @property
    def reply_bytes(self) -> int:
        """Replies written and not yet taken by the client (at most --max-reply-bytes)."""
        t = self.transport
        return t.get_write_buffer_size() if t is not None and not self.closed else 0

    def _refuse_no_fds(self, fd: int) -> None:
        self.metrics.accept_errors["fd_exhausted"] += 1
        now = time.monotonic()
        if now - _refused_logged[0] >= 1.0:  # once a second while it lasts
            _refused_logged[0] = now
            log.error(
                "refusing new connections: fd_exhausted (file descriptor %d, %d kept for "
                "Kafka and the rest); %d open connections go on",
                fd,
                FD_RESERVE,
                len(self.hub.connections),
            )
        self._abort()

    def _abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()
