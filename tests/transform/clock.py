"""A controllable clock for the stream table: time moves only when a test says so."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable


class FakeHandle:
    __slots__ = ("callback", "cancelled", "fired", "when")

    def __init__(self, when: float, callback: Callable[[], object]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False
        self.fired = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """Implements model.Clock. `early` makes timers run that many seconds before their
    time, as real loops may (asyncio's clock resolution, uvloop's millisecond rounding)."""

    MAX_FIRES_PER_ADVANCE = 200_000  # a spinning timer fails the test instead of hanging

    def __init__(self, now: float = 1000.0, early: float = 0.0) -> None:
        self.now = now
        self.early = early
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
        """Live timers: neither cancelled nor fired."""
        return sum(1 for _, _, h in self._heap if not h.cancelled and not h.fired)

    def advance(self, seconds: float) -> None:
        """Move time forward, running due callbacks in time order (each sees its time)."""
        target = self.now + seconds
        fires = 0
        while self._heap and self._heap[0][0] - self.early <= target:
            when, _, handle = heapq.heappop(self._heap)
            if handle.cancelled:
                continue
            self.now = max(self.now, when - self.early)
            handle.fired = True
            self.fired += 1
            fires += 1
            if fires > self.MAX_FIRES_PER_ADVANCE:
                raise AssertionError("timers keep re-arming for the same instant")
            handle.callback()
        self.now = target

    def jump(self, seconds: float) -> None:
        """Move time forward WITHOUT running callbacks: a loop too busy to run due timers."""
        self.now += seconds
