"""The outbox every sink shares: the ordered intake, pending accounting with backpressure,
and turning delivery outcomes into acks, errors and metrics.

A record is *pending* from `submit()` until Kafka acknowledges it or it finally fails.
Its `size` is what it really holds in memory while pending (the record object, its value,
its ack tokens, the outbox's entry, and whatever copy the sink keeps, such as the Kafka
batch it was appended to), and the sum of pending sizes is what `--max-pending-bytes`
bounds. The record object itself carries its delivery state (`submitted_at`, `size`,
`partition`, `solo`); the outbox keeps one insertion-ordered map of pending records,
which gives their count, the oldest one, and nothing else to keep in step.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections import deque
from collections.abc import Callable

from sidecar.budget import Budget
from sidecar.metrics import Metrics
from sidecar.model import AckToken, Record
from sidecar.sink.problems import KafkaProblem
from sidecar_client.protocol.replies import ErrorCode

log = logging.getLogger("sidecar.sink")

PressureCallback = Callable[[bool], None]
FailureCallback = Callable[[Record, str], None]

# Resume reading once pending bytes fall to this share of the limit, so the sockets do not
# flap between paused and reading on every record.
_RESUME_RATIO = 0.75

# What a pending record costs besides its value's bytes and its acks: the record object,
# the value's bytes-object header, and its entry in the outbox's map (a dict slot and
# its share of the index, with the table's spare room, and the int of its id).
RECORD_OVERHEAD = sys.getsizeof(Record("", "", "delta", b"", 0)) + sys.getsizeof(b"") + 160
# One ack token and its pointer in the record's list (the list itself, once per record).
ACK_OVERHEAD = sys.getsizeof(AckToken(None, 0)) + 8  # type: ignore[arg-type]
ACKS_LIST_OVERHEAD = sys.getsizeof([])


def footprint(record: Record) -> int:
    """Bytes a record holds as Python objects (its strings are its stream's, shared)."""
    n = len(record.acks)
    acks = n * ACK_OVERHEAD + ACKS_LIST_OVERHEAD if n else 0
    return RECORD_OVERHEAD + len(record.value) + acks


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
        # Accepted records the sender has not taken yet (sinks that take them later).
        self.queue: deque[Record] = deque()
        self.pending_bytes = 0
        # Every kind of byte held for clients (sidecar.budget); its partial lines count
        # against the same limit as pending records. The server shares it.
        self.budget = Budget()
        self.paused = False
        self._paused_total = 0.0  # seconds paused, up to the last resume
        self._paused_at = 0.0
        self.on_pressure: PressureCallback = lambda _paused: None
        # No silent holes (PROTOCOL §5): the stream table hears of every final failure
        # (and ends the stream), and says which later records must not be produced.
        self.on_failed: FailureCallback = lambda _record, _reason: None
        self.withdrawn: Callable[[Record], bool] = lambda _record: False
        # The `sidecar_instance` header of every record: random per start.
        self.instance = b""
        self.sweep_needed = False  # see stream_failed()
        self._wakeup = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        # Every pending record, in submission order (the oldest first).
        self._pending: dict[int, Record] = {}
        # What /readyz reports; the Kafka sink keeps them current.
        self.kafka_up = True
        self.problem: KafkaProblem | None = None
        self.stall_after = 5.0  # seconds without an ack, with records waiting: unreachable

    @property
    def last_error(self) -> str | None:
        """The reason code of the last problem with Kafka (None while all is well)."""
        return None if self.problem is None else self.problem.reason.value

    @property
    def cache_bytes(self) -> int:
        """Bytes of caches the sink keeps for speed (bounded by the sink)."""
        return 0

    @property
    def pending_records(self) -> int:
        return len(self._pending)

    @property
    def kafka_reachable(self) -> bool:
        """False after a failed contact, or while the oldest pending record has waited
        past `stall_after` (aiokafka retries an outage silently, so silence is the sign)."""
        if not self.kafka_up:
            return False
        if not self._pending:
            return True
        # Read on scrape and readiness only, never per record.
        oldest = next(iter(self._pending.values()))
        return self.clock() - oldest.submitted_at < self.stall_after

    async def serve(self) -> None:
        """Deliver submitted records until cancelled."""
        raise NotImplementedError

    # -- intake (synchronous: called by the coalescer, never blocks) ------------------

    def submit(self, record: Record) -> None:
        if record.terminal_reason is not None:
            self.metrics.streams_ended[record.terminal_reason] += 1
        record.submitted_at = self.clock()
        size = footprint(record) + self._accept(record)
        record.size = size
        self._pending[id(record)] = record
        self.pending_bytes += size
        if len(self._pending) == 1:
            self._drained.clear()
        if (
            not self.paused
            and self.pending_bytes + self.budget.partial_lines > self.max_pending_bytes
        ):
            self._pause()

    def check_pressure(self) -> None:
        """Pause or resume after a change outside submit and settle: partial lines (a
        read left a line unfinished, or finished one), or open streams past their bound."""
        budget = self.budget
        if not self.paused:
            if (
                self.pending_bytes + budget.partial_lines > self.max_pending_bytes
                or budget.open_streams > budget.max_open_streams
            ):
                self._pause()
        elif self._below_resume():
            self._resume()

    @property
    def has_room(self) -> bool:
        """Pending records (with partial lines) leave room under the limit: records may
        be produced without reading more (terminals of streams ended meanwhile)."""
        return self.pending_bytes + self.budget.partial_lines <= self.max_pending_bytes

    def _below_resume(self) -> bool:
        budget = self.budget
        return (
            self.pending_bytes + budget.partial_lines <= self.max_pending_bytes * _RESUME_RATIO
            and budget.open_streams <= budget.max_open_streams * _RESUME_RATIO
        )

    def _pause(self) -> None:
        self.paused = True
        self._paused_at = self.clock()
        budget = self.budget
        log.warning(
            "pausing socket reads: pending records and partial lines %d bytes "
            "(--max-pending-bytes %d), open streams %d bytes (--max-open-stream-bytes %d)",
            self.pending_bytes + budget.partial_lines,
            self.max_pending_bytes,
            budget.open_streams,
            budget.max_open_streams,
        )
        self.on_pressure(True)

    def _resume(self) -> None:
        self.paused = False
        self._paused_total += self.clock() - self._paused_at
        log.info(
            "resuming socket reads: pending records and partial lines %d bytes, open "
            "streams %d bytes",
            self.pending_bytes + self.budget.partial_lines,
            self.budget.open_streams,
        )
        self.on_pressure(False)

    def _accept(self, record: Record) -> int:
        """Take the record for delivery; returns the bytes of any copy the sink keeps.
        This default queues it for `serve()`."""
        self.queue.append(record)
        self._wakeup.set()
        return 0

    async def flush(self) -> None:
        """Wait until every record submitted so far is acknowledged or has failed."""
        await self._drained.wait()

    # -- outcomes ---------------------------------------------------------------------

    def paused_seconds(self) -> float:
        """Time socket reads have spent paused by backpressure, the current pause too."""
        now = self.clock() - self._paused_at if self.paused else 0.0
        return self._paused_total + now

    def delivered(self, record: Record, partition: int, offset: int) -> None:
        self.delivered_batch([record], partition, offset)

    def delivered_batch(self, records: list[Record], partition: int, base: int) -> None:
        """Kafka acknowledged `records`, in order, at offsets from `base`. The records are
        settled as `_settle` does, their bytes released (and the pressure checked) once for
        the batch."""
        m = self.metrics
        produced = m.produced
        pending = self._pending
        delivery_latency = m.delivery_latency.observe
        now = self.clock()
        released = value_bytes = 0
        offset = base - 1
        for record in records:
            offset += 1
            if pending.pop(id(record), None) is None:
                continue  # settled already: never count a record twice
            released += record.size
            value_bytes += len(record.value)
            produced[record.kind] += 1
            if record.deltas:
                m.deltas_per_record.observe(record.deltas)
            delivery_latency(now - record.submitted_at)
            if record.first_delta_at is not None:
                m.first_delta_latency.observe(now - record.first_delta_at)
            for token in record.acks:
                token.target.send_ack(token.seq, partition, offset)
        m.produced_bytes += value_bytes
        self._released(released)

    def failed(self, record: Record, reason: str) -> None:
        self._settle(record)
        self.metrics.delivery_failures += 1
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

    def stream_failed(self) -> None:
        """A stream just ended at a failed record: its later records still waiting must
        be withdrawn (`withdraw`) before anything more is produced."""
        self.sweep_needed = True
        self._wakeup.set()

    def withdraw(self, record: Record) -> bool:
        """Fail `record` instead of producing it if its stream already ended at an earlier
        failed record; True if it was withdrawn."""
        if not self.withdrawn(record):
            return False
        self.failed(record, "an earlier record of its stream was not delivered")
        return True

    def _settle(self, record: Record) -> None:
        """No longer pending."""
        if self._pending.pop(id(record), None) is None:
            return  # settled already: never count a record twice
        self._released(record.size)

    def _released(self, size: int) -> None:
        """Settled records held `size` bytes: resume reading if that made room."""
        self.pending_bytes -= size
        if self.paused and self._below_resume():
            self._resume()
        if not self._pending:
            self._drained.set()

    def expired(self, record: Record, limit: float) -> bool:
        if record.terminal_reason == "delivery_failed":
            # The marker of a hole never expires: without it the hole would be silent
            # (PROTOCOL §5). One per failed stream; the shutdown deadline bounds it.
            return False
        return self.clock() - record.submitted_at > limit

    async def _wait_for_work(self) -> None:
        self._wakeup.clear()
        await self._wakeup.wait()

    def _take_queued(self) -> list[Record]:
        batch = list(self.queue)
        self.queue.clear()
        return batch
