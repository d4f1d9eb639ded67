"""What every sink shares: the ordered intake, pending-bytes accounting with backpressure,
and turning delivery outcomes into acks, errors and metrics.

A record is *pending* from `submit()` until Kafka acknowledges it or it finally fails;
the sum of pending sizes is what `--max-pending-bytes` bounds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable

from sidecar.metrics import Metrics
from sidecar.model import Record
from sidecar_client.protocol.replies import ErrorCode

log = logging.getLogger("sidecar.sink")

PressureCallback = Callable[[bool], None]
FailureCallback = Callable[[Record, str], None]

# Resume reading once pending bytes fall to this share of the limit, so the sockets do not
# flap between paused and reading on every record.
_RESUME_RATIO = 0.75


class SinkBase:
    def __init__(
        self,
        *,
        max_pending_bytes: int,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # The same clock as the coalescer's (the loop's), so first-delta times compare.
        self.clock = clock
        self.metrics = metrics
        self.max_pending_bytes = max_pending_bytes
        self.queue: deque[Record] = deque()
        self.pending_bytes = 0
        self.paused = False
        self.on_pressure: PressureCallback = lambda _paused: None
        # No silent holes (PROTOCOL §5): the stream table hears of every final failure
        # (and ends the stream), and says which later records must not be produced.
        self.on_failed: FailureCallback = lambda _record, _reason: None
        self.withdrawn: Callable[[Record], bool] = lambda _record: False
        # The `sidecar_instance` header of every record: random per start.
        self.instance = b""
        self._wakeup = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        # Every pending record's submission time, in submission order (the oldest first):
        # the count of pending records, delivery latency and reachability all read it.
        self._submitted_at: dict[int, float] = {}
        # What /readyz reports; the Kafka sink keeps them current.
        self.kafka_up = True
        # Why the last contact failed: a short code for /readyz (PROTOCOL §8), and the
        # raw error text, which is logged and shown only when asked for.
        self.down_reason = "unreachable"
        self.last_error: str | None = None
        self.stall_after = 5.0  # seconds without an ack, with records waiting: unreachable

    @property
    def pending_records(self) -> int:
        return len(self._submitted_at)

    @property
    def kafka_reachable(self) -> bool:
        """False after a failed contact, or while the oldest pending record has waited
        past `stall_after` (aiokafka retries an outage silently, so silence is the sign)."""
        if not self.kafka_up:
            return False
        if not self._submitted_at:
            return True
        oldest = next(iter(self._submitted_at.values()))
        return self.clock() - oldest < self.stall_after

    @property
    def kafka_reason(self) -> str | None:
        """Why Kafka is not reachable, as a reason code; None while it is."""
        if not self.kafka_up:
            return self.down_reason
        return None if self.kafka_reachable else "stalled"

    async def serve(self) -> None:
        """Deliver submitted records until cancelled."""
        raise NotImplementedError

    # -- intake (synchronous: called by the coalescer, never blocks) ------------------

    def submit(self, record: Record) -> None:
        self.queue.append(record)
        self._submitted_at[id(record)] = self.clock()
        self.pending_bytes += record.size
        self._drained.clear()
        self._wakeup.set()
        if not self.paused and self.pending_bytes > self.max_pending_bytes:
            self.paused = True
            self.metrics.backpressure.set(1)
            log.warning(
                "pending bytes %d passed --max-pending-bytes %d: pausing socket reads",
                self.pending_bytes,
                self.max_pending_bytes,
            )
            self.on_pressure(True)

    async def flush(self) -> None:
        """Wait until every record submitted so far is acknowledged or has failed."""
        await self._drained.wait()

    # -- outcomes ---------------------------------------------------------------------

    def delivered(self, record: Record, partition: int, offset: int) -> None:
        started = self._settle(record)
        m = self.metrics
        m.produced[record.kind].inc()
        if record.deltas:
            m.deltas_per_record.observe(record.deltas)
        now = self.clock()
        if started is not None:
            m.delivery_latency.observe(now - started)
        if record.first_delta_at is not None:
            m.first_delta_latency.observe(now - record.first_delta_at)
        for token in record.acks:
            token.target.send_ack(token.seq, partition, offset)

    def failed(self, record: Record, reason: str) -> None:
        self._settle(record)
        self.metrics.delivery_failures.inc()
        log.error(
            "record %s/%s seq %d (%s) not delivered: %s",
            record.task_id,
            record.message_id,
            record.stream_seq,
            record.kind,
            reason,
        )
        for token in record.acks:
            token.target.send_error(token.seq, ErrorCode.DELIVERY_FAILED, reason)
        self.on_failed(record, reason)

    def withdraw(self, record: Record) -> bool:
        """Fail `record` instead of producing it if its stream already ended at an earlier
        failed record; True if it was withdrawn. Sinks call it right before producing."""
        if not self.withdrawn(record):
            return False
        self.failed(record, "an earlier record of its stream was not delivered")
        return True

    def _settle(self, record: Record) -> float | None:
        """No longer pending; returns when it was submitted."""
        started = self._submitted_at.pop(id(record), None)
        self.pending_bytes -= record.size
        if self.paused and self.pending_bytes <= self.max_pending_bytes * _RESUME_RATIO:
            self.paused = False
            self.metrics.backpressure.set(0)
            log.info("pending bytes back to %d: resuming socket reads", self.pending_bytes)
            self.on_pressure(False)
        if not self._submitted_at:
            self._drained.set()
        return started

    async def _wait_for_work(self) -> None:
        self._wakeup.clear()
        await self._wakeup.wait()

    def _take_queued(self) -> list[Record]:
        batch = list(self.queue)
        self.queue.clear()
        return batch
