"""The registry of live connections: backpressure pauses and resumes them all, and
shutdown closes them. It knows nothing of frames or streams, and imports no connection:
anything with pause/resume/close can be registered."""

from __future__ import annotations

from typing import Generic, Protocol, TypeVar


class Member(Protocol):
    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def close(self) -> None: ...

    @property
    def reply_bytes(self) -> int: ...


M = TypeVar("M", bound=Member)


class Hub(Generic[M]):
    def __init__(self) -> None:
        self.connections: set[M] = set()
        self.paused = False

    def register(self, conn: M) -> None:
        self.connections.add(conn)
        if self.paused:
            conn.pause()

    def unregister(self, conn: M) -> None:
        self.connections.discard(conn)

    def set_paused(self, paused: bool) -> None:
        """Backpressure from the sink: stop or restart reading every socket."""
        self.paused = paused
        for conn in self.connections:
            if paused:
                conn.pause()
            else:
                conn.resume()

    def reply_bytes(self) -> int:
        """Replies written and not yet read, over every connection (scrape time)."""
        return sum(conn.reply_bytes for conn in self.connections)

    def close_all(self) -> None:
        for conn in list(self.connections):
            conn.close()
