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
from sidecar.sink.kafka import KafkaSink, producer_kwargs


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


def first_delta(n: int) -> Record:
    return Record("task", "m", "delta", b'{"n":%d}' % n, n, first_delta_at=Clock.now)


def terminal(n: int) -> Record:
    return Record("task", "m", "done", b'{"n":%d}' % n, n, terminal_reason="client")


async def test_a_plain_delta_lingers_on_a_free_lane() -> None:
    sink = make_sink(Clock(), linger_ms=20)
    sink.submit(record(1))
    assert not sink._wakeup.is_set()
    assert sink._tick is not None


@pytest.mark.parametrize("make", [first_delta, terminal], ids=["first delta", "terminal"])
async def test_a_record_someone_waits_for_goes_at_once(make: Any) -> None:
    """The time to first token and the end of a turn do not wait out the linger."""
    sink = make_sink(Clock(), linger_ms=20)
    sink.submit(make(0))
    assert sink._wakeup.is_set()


@pytest.mark.parametrize("make", [first_delta, terminal], ids=["first delta", "terminal"])
async def test_a_freed_lane_with_an_urgent_record_waiting_sends_at_once(make: Any) -> None:
    clock = Clock()
    sink = make_sink(clock, linger_ms=20)
    sink.submit(record(0))
    sent = in_flight(sink)
    clock.now += 0.001
    sink.submit(make(1))  # its lane is busy: it waits for the batch in flight only
    assert not sink._wakeup.is_set()
    disarm(sink)
    clock.now += 0.002
    sink._on_batch_done(sink._lanes[0], sent, acknowledged(0))
    assert sink._wakeup.is_set()
    in_flight(sink)
    assert not sink._lanes[0].urgent  # sent: the lane's next records linger again


def test_the_producer_does_not_linger_a_second_time() -> None:
    """The sink hands over batches that have lingered already; aiokafka's own linger
    would hold each one again."""
    config = Config(bootstrap_servers="kafka:9092", topic="t", linger_ms=20)
    assert producer_kwargs(config)["linger_ms"] == 0
