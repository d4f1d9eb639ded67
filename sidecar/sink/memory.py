"""An in-memory sink for hermetic unit tests: same intake and outcomes, no Kafka.

Records are "acknowledged" as soon as `serve()` sees them (or held while `hold` is
set), with per-task partitions and contiguous offsets like a real topic.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Callable

from sidecar.metrics import Metrics
from sidecar.model import Record
from sidecar.sink.base import SinkBase


class MemorySink(SinkBase):
    def __init__(
        self,
        *,
        partitions: int = 3,
        max_pending_bytes: int = 64 << 20,
        metrics: Metrics | None = None,
    ) -> None:
        super().__init__(max_pending_bytes=max_pending_bytes, metrics=metrics or Metrics())
        self.partitions = partitions
        self.records: list[tuple[int, int, Record]] = []  # (partition, offset, record)
        self._next_offset = [0] * partitions
        self.hold = asyncio.Event()  # set: deliveries pause (a Kafka outage)
        self.fail_with: str | None = None  # set: every record fails with this reason
        # Set: the records it returns a reason for fail (a record expiring, say).
        self.fail_when: Callable[[Record], str | None] = lambda _record: None
        self._progress = asyncio.Event()

    async def wait_for(self, predicate: Callable[[MemorySink], bool], timeout: float = 10) -> None:
        """Wait until `predicate(self)` holds, re-checked after every delivery."""
        async with asyncio.timeout(timeout):
            while not predicate(self):
                self._progress.clear()
                await self._progress.wait()

    def by_stream(self) -> dict[tuple[str, str], list[Record]]:
        out: dict[tuple[str, str], list[Record]] = {}
        for _, _, r in self.records:
            out.setdefault((r.task_id, r.message_id), []).append(r)
        return out

    def submit(self, record: Record) -> None:
        super().submit(record)
        self._progress.set()

    async def serve(self) -> None:
        while True:
            if not self.queue or self.hold.is_set():
                await self._wait_for_work()
                continue
            for record in self._take_queued():
                if self.withdraw(record):
                    continue
                why = self.fail_with or self.fail_when(record)
                if why is not None:
                    self.failed(record, why)
                    continue
                p = zlib.crc32(record.task_id.encode()) % self.partitions
                offset = self._next_offset[p]
                self._next_offset[p] += 1
                self.records.append((p, offset, record))
                self.delivered(record, p, offset)
            self._progress.set()

    def release(self) -> None:
        """End a simulated outage."""
        self.hold.clear()
        self._wakeup.set()
