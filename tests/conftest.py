"""Session fixtures: one real Kafka broker for the whole run, chosen by `testbed`
(never skipped: no broker fails the tests that need one), and fresh topics per test."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator, Iterator

import pytest

from testbed import Broker, BrokerUnavailable, create_topic, obtain_broker
from testbed.kraft import KRaftCluster
from tests.users import other_user  # noqa: F401 (a fixture, shared by the security tests)

NewTopic = Callable[..., Awaitable[str]]
_brokers: list[Broker] = []


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[Broker]:
    broker = obtain_broker()  # raises BrokerUnavailable (an error, not a skip)
    _brokers.append(broker)
    try:
        yield broker
    finally:
        broker.close()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: Broker) -> str:
    return kafka_broker.bootstrap_servers


@pytest.fixture(scope="module")
def own_broker() -> Iterator[KRaftCluster]:
    """A broker of the requesting module's own, always local: its tests stop and restart it,
    so the session broker (and every other module) is never disturbed."""
    cluster = KRaftCluster(1)
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def new_topic(kafka_bootstrap: str) -> NewTopic:
    """`await new_topic(partitions=3, *, config=None, replication_factor=1, bootstrap=None)`:
    a uniquely named topic, every partition led, on the session broker (or `bootstrap`)."""

    async def make(
        partitions: int = 3,
        *,
        config: dict[str, str] | None = None,
        replication_factor: int = 1,
        bootstrap: str | None = None,
    ) -> str:
        return await create_topic(
            bootstrap or kafka_bootstrap,
            partitions=partitions,
            replication_factor=replication_factor,
            config=config,
        )

    return make


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if call.excinfo is not None and call.excinfo.errisinstance(BrokerUnavailable):
        kafka = " (marked kafka)" if item.get_closest_marker("kafka") else ""
        report.longrepr = f"{item.nodeid}{kafka} needs a Kafka broker: {call.excinfo.value}"
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for broker in _brokers:
        took = f", started in {broker.startup_seconds:.1f}s" if broker.startup_seconds else ""
        terminalreporter.write_line(f"Kafka test bed: {broker.describe()}{took}")
