"""What the connections share: the stream table, the config and metrics, and the set of
live connections (for backpressure, disconnect handling and shutdown)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sidecar.config import Config
from sidecar.metrics import Metrics
from sidecar.transform.table import StreamTable

if TYPE_CHECKING:
    from sidecar.source.connection import Connection


class Hub:
    def __init__(self, config: Config, metrics: Metrics, table: StreamTable) -> None:
        self.config = config
        self.metrics = metrics
        self.table = table
        self.connections: set[Connection] = set()
        self.draining = False
        self.paused = False

    def register(self, conn: Connection) -> None:
        self.connections.add(conn)
        if self.paused:
            conn.pause()

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
