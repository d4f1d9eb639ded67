"""One open stream's state: its record counter, its coalescing window, what a
synthesized terminal needs."""

from __future__ import annotations

from typing import Any

from sidecar.model import StreamKey, TimerHandle
from sidecar.transform.merge import Pending


class Stream:
    __slots__ = (
        "index",
        "key",
        "last_active",
        "last_flush",
        "next_seq",
        "owner",
        "parent",
        "pending",
        "pending_chars",
        "seen_delta",
        "timer",
    )

    def __init__(self, key: StreamKey, owner: object, now: float) -> None:
        self.key = key
        self.owner = owner
        self.next_seq = 0  # the next record's `seq` header
        self.pending: list[Pending] = []
        self.pending_chars = 0
        self.last_flush: float | None = None  # when deltas last went out; None: never
        # Armed only while deltas are pending: an idle stream holds no timer at all.
        self.timer: TimerHandle | None = None
        self.parent: Any = None  # the last parent_task_message, for a synthesized done
        self.index: Any = None  # the last update `index`, likewise
        self.last_active = now
        self.seen_delta = False

    def cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
