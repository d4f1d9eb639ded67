"""The Kafka sender's lanes, without a broker: when a partition whose batch Kafka just
acknowledged sends its next one. Sending at once whenever records wait made every
partition a stream of tiny batches paced by the broker's round trip; a freed lane waits
until its first waiting record has lingered --linger-ms (a full batch goes at once)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

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


@pytest.mark.parametrize(
    ("waited", "at_once"),
    [(0.003, False), (0.030, True)],  # of a 20 ms linger
)
async def test_a_freed_lane_sends_when_its_first_waiting_record_has_lingered(
    waited: float, at_once: bool
) -> None:
    clock = Clock()
    sink = make_sink(clock, linger_ms=20)
    sink.submit(record(0))
    sent = in_flight(sink)
    clock.now += 0.005
    sink.submit(record(1))  # waits while the first batch is in flight
    disarm(sink)
    clock.now += waited  # then Kafka acknowledges the first batch
    sink._on_batch_done(sink._lanes[0], sent, acknowledged(0))
    assert sink.pending_records == 1
    assert sink._wakeup.is_set() is at_once
    if at_once:
        assert sink._tick is None
    else:  # armed for the rest of record 1's linger
        assert sink._tick is not None
        left = sink._tick.when() - asyncio.get_running_loop().time()
        assert abs(left - (0.020 - waited)) < 0.005
