"""The Kafka sender's lanes, without a broker: when a partition whose batch Kafka just
acknowledged sends its next one. Sending at once whenever records wait made every
partition a stream of tiny batches paced by the broker's round trip; a freed lane waits
until its first waiting record has lingered --linger-ms (a full batch goes at once)."""

from __future__ import annotations

import asyncio
from typing import Any

from sidecar.config import Config
from sidecar.metrics import Metrics
from sidecar.model import Record
from sidecar.sink.kafka import KafkaSink


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def make_sink(clock: Clock, linger_ms: int = 20) -> KafkaSink:
    config = Config(bootstrap_servers="kafka:9092", topic="t", linger_ms=linger_ms)
    sink = KafkaSink(config, Metrics())
    sink.clock = clock
    sink._route_anew(1)  # one partition, as if the topic had been looked up
    return sink


def record(n: int) -> Record:
    return Record("task", "m", "delta", b'{"n":%d}' % n, n)


def acknowledged(offset: int) -> asyncio.Future[Any]:
    fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    fut.set_result(type("Meta", (), {"offset": offset})())
    return fut


def disarm(sink: KafkaSink) -> None:
    """Cancel the linger tick the submits armed: what follows is about the settle."""
    if sink._tick is not None:
        sink._tick.cancel()
        sink._tick = None
    sink._wakeup.clear()


def in_flight(sink: KafkaSink) -> list[Record]:
    """Hand the lane's batch to 'Kafka', as _dispatch does."""
    lane = sink._lanes[0]
    batch = lane.take()
    assert batch is not None
    lane.inflight = batch[1]
    return batch[1]


async def test_a_freed_lane_waits_out_the_linger_of_its_first_waiting_record() -> None:
    clock = Clock()
    sink = make_sink(clock)
    sink.submit(record(0))
    sent = in_flight(sink)
    clock.now += 0.005
    sink.submit(record(1))  # waits while the first batch is in flight
    disarm(sink)
    clock.now += 0.003  # Kafka acknowledges the first batch 8 ms in
    sink._on_batch_done(sink._lanes[0], sent, acknowledged(0))
    assert sink.pending_records == 1
    assert not sink._wakeup.is_set()  # not at once: record 1 has waited 3 ms of 20
    tick = sink._tick
    assert tick is not None
    assert abs(tick.when() - asyncio.get_running_loop().time() - 0.017) < 0.005


async def test_a_freed_lane_whose_record_lingered_long_enough_sends_at_once() -> None:
    clock = Clock()
    sink = make_sink(clock)
    sink.submit(record(0))
    sent = in_flight(sink)
    clock.now += 0.001
    sink.submit(record(1))
    disarm(sink)
    clock.now += 0.030  # a slow acknowledgement: record 1 waited past the linger
    sink._on_batch_done(sink._lanes[0], sent, acknowledged(0))
    assert sink._wakeup.is_set()
    assert sink._tick is None
