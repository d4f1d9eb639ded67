"""A controllable clock for the stream table: time moves only when a test says so."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable


class FakeHandle:
    def __init__(self, when: float, callback: Callable[[], object]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False
        self.fired = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.fired = 0  # callbacks run so far: the "wake-ups"
        self._heap: list[tuple[float, int, FakeHandle]] = []
        self._ids = itertools.count()

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], object]) -> FakeHandle:
        handle = FakeHandle(when, callback)
        heapq.heappush(self._heap, (when, next(self._ids), handle))
        return handle

    @property
    def armed(self) -> int:
        return sum(1 for _, _, h in self._heap if not h.cancelled and not h.fired)

    def advance(self, seconds: float) -> None:
        """Move time forward, running due callbacks in time order."""
        target = self.now + seconds
        while self._heap and self._heap[0][0] <= target:
            when, _, handle = heapq.heappop(self._heap)
            if handle.cancelled:
                continue
            self.now = max(self.now, when)
            handle.fired = True
            self.fired += 1
            handle.callback()
        self.now = target
