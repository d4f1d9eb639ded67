"""What every sink shares: pending accounting, backpressure hysteresis, reachability."""

from __future__ import annotations

from sidecar.metrics import Metrics
from sidecar.model import Record
from sidecar.sink.base import SinkBase


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def record(size: int, task: str = "t") -> Record:
    return Record(task_id=task, message_id="m", kind="delta", value=b"x" * size, stream_seq=0)


async def test_pressure_pauses_past_the_limit_and_resumes_below_three_quarters() -> None:
    events: list[bool] = []
    sink = SinkBase(max_pending_bytes=1000, metrics=Metrics())
    sink.on_pressure = events.append
    recs = [record(300 - 66) for _ in range(4)]  # 300 bytes each, counted with overhead
    for r in recs:
        sink.submit(r)
    assert events == [True]
    assert sink.pending_bytes == 1200
    sink.delivered(recs[0], 0, 0)  # 900: still above 750
    assert events == [True]
    sink.delivered(recs[1], 0, 1)  # 600: resume
    assert events == [True, False]
    sink.delivered(recs[2], 0, 2)
    sink.failed(recs[3], "nope")
    assert sink.pending_records == 0
    await sink.flush()  # returns at once: nothing pending


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
