"""What the connections share: the stream table, the config and metrics, and the set of
live connections (for backpressure, disconnect handling and shutdown)."""

from __future__ import annotations

import logging
import resource
import time
from typing import TYPE_CHECKING

from sidecar.config import Config
from sidecar.metrics import Metrics
from sidecar.transform.table import StreamTable

if TYPE_CHECKING:
    from sidecar.source.connection import Connection

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


class Hub:
    def __init__(self, config: Config, metrics: Metrics, table: StreamTable) -> None:
        self.config = config
        self.metrics = metrics
        self.table = table
        self.connections: set[Connection] = set()
        self.draining = False
        self.paused = False
        self.max_fd = fd_ceiling()
        self._refused_logged = -1e9

    def register(self, conn: Connection) -> bool:
        """Take a new connection; False (the caller closes it) when at the fd limit."""
        sock = conn.transport.get_extra_info("socket") if conn.transport else None
        fd = sock.fileno() if sock is not None else -1
        if fd >= self.max_fd:
            self.metrics.accept_errors["fd_exhausted"] += 1
            now = time.monotonic()
            if now - self._refused_logged >= 1.0:  # once a second while it lasts
                self._refused_logged = now
                log.error(
                    "refusing new connections on %s: fd_exhausted (file descriptor %d, "
                    "%d kept for Kafka and the rest); %d open connections go on",
                    self.config.socket,
                    fd,
                    FD_RESERVE,
                    len(self.connections),
                )
            return False
        self.connections.add(conn)
        if self.paused:
            conn.pause()
        return True

    def unregister(self, conn: Connection) -> None:
        self.connections.discard(conn)
        self.end_streams_of(conn)

    def end_streams_of(self, conn: Connection) -> None:
        """A client that disconnected (or half-closed) ends its open streams (§6)."""
        if self.config.on_disconnect == "end":
            self.table.end_owned_by(conn, "disconnect")

    def set_paused(self, paused: bool) -> None:
        """Backpressure from the sink: stop or restart reading every socket."""
        self.paused = paused
        for conn in self.connections:
            if paused:
                conn.pause()
            else:
                conn.resume()

    def close_all(self) -> None:
        for conn in list(self.connections):
            conn.close()
