"""Session fixtures: one real Kafka broker for the whole run (never skipped: no broker
fails the run), and fresh topics per test."""

from __future__ import annotations

import itertools
import os
from collections.abc import Awaitable, Callable, Iterator

import pytest

from sidecar.sink.kafka import create_topic
from sidecar.testbed import Broker, obtain_broker

NewTopic = Callable[..., Awaitable[str]]
_topic_ids = itertools.count()


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[Broker]:
    # Raises BrokerUnavailable (an error, not a skip) when no broker can be had.
    broker = obtain_broker()
    try:
        yield broker
    finally:
        broker.close()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: Broker) -> str:
    return kafka_broker.bootstrap_servers


@pytest.fixture
def new_topic(kafka_bootstrap: str) -> NewTopic:
    async def make(
        partitions: int = 3, *, config: dict[str, str] | None = None, bootstrap: str | None = None
    ) -> str:
        name = f"t-{os.getpid()}-{next(_topic_ids)}"
        await create_topic(bootstrap or kafka_bootstrap, name, partitions=partitions, config=config)
        return name

    return make
