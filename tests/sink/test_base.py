"""What every sink shares: pending accounting, backpressure hysteresis, reachability."""

from __future__ import annotations

import tracemalloc

import orjson

from sidecar.metrics import Metrics
from sidecar.model import AckToken, Record
from sidecar.sink.base import RECORD_OVERHEAD, SinkBase


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def record(size: int, task: str = "t") -> Record:
    return Record(task_id=task, message_id="m", kind="delta", value=b"x" * size, stream_seq=0)


async def test_pressure_pauses_past_the_limit_and_resumes_below_three_quarters() -> None:
    events: list[bool] = []
    sink = SinkBase(max_pending_bytes=2000, metrics=Metrics())
    sink.on_pressure = events.append
    recs = [record(600 - RECORD_OVERHEAD) for _ in range(4)]  # 600 bytes each, with overhead
    for r in recs:
        sink.submit(r)
    assert events == [True]
    assert sink.pending_bytes == 2400
    sink.delivered(recs[0], 0, 0)  # 1800: still above 1500
    assert events == [True]
    sink.delivered(recs[1], 0, 1)  # 1200: resume
    assert events == [True, False]
    sink.delivered(recs[2], 0, 2)
    sink.failed(recs[3], "nope")
    assert sink.pending_records == 0
    await sink.flush()  # returns at once: nothing pending


class ReplyTarget:
    def send_ack(self, seq: int, partition: int, offset: int) -> None:
        pass

    def send_error(self, seq: int, code: str, message: str) -> None:
        pass


def reachable(sink: SinkBase) -> bool:
    return sink.kafka_reachable  # a call, so mypy does not narrow it between checks


async def test_reachability_follows_the_oldest_unacknowledged_record() -> None:
    clock = Clock()
    sink = SinkBase(max_pending_bytes=1 << 20, metrics=Metrics(), clock=clock)
    assert reachable(sink)
    old, new = record(10), record(10)
    sink.submit(old)
    clock.now = 3.0
    sink.submit(new)
    assert reachable(sink)
    clock.now = 5.5  # the oldest has waited 5.5 s with no ack
    assert not reachable(sink)
    sink.delivered(old, 0, 0)  # the next oldest has waited 2.5 s
    assert reachable(sink)
    sink.kafka_up = False  # a failed contact
    assert not reachable(sink)


def test_pending_bytes_are_what_the_records_really_hold() -> None:
    """The accounting matches the allocation (tracemalloc), within a tenth, for records
    with and without acks; so --max-pending-bytes bounds real memory."""
    target = ReplyTarget()
    for acks in (0, 3):
        sink = SinkBase(max_pending_bytes=1 << 40, metrics=Metrics())
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for i in range(2000):
            tokens = [AckToken(target, j) for j in range(acks)] if acks else ()
            value = memoryview(orjson.dumps({"delta": "x" * (i % 300)})).tobytes()
            sink.submit(
                Record(
                    task_id="t",
                    message_id="m",
                    kind="delta",
                    value=value,
                    stream_seq=i,
                    acks=tokens,
                )
            )
        held = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        assert 0.9 < sink.pending_bytes / held < 1.1, (acks, sink.pending_bytes, held)
