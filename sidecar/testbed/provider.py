"""Which broker a test run or the demo gets, in order:

1. `KAFKA_BOOTSTRAP_SERVERS` names one: use it.
2. A Docker engine answers: testcontainers' Kafka module (KRaft).
3. Otherwise: a single-node KRaft broker from Apache Kafka's own jars (Java + Maven).

None working raises BrokerUnavailable naming what was tried and why each failed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Iterator
from typing import Any, Protocol

from sidecar.testbed.kraft import KRaftCluster

log = logging.getLogger("sidecar.testbed")


class BrokerUnavailable(RuntimeError):
    pass


class Broker(Protocol):
    bootstrap_servers: str
    kind: str

    def stop(self) -> None: ...

    def start(self) -> None: ...

    def close(self) -> None: ...


class ExternalBroker:
    kind = "external"

    def __init__(self, bootstrap_servers: str) -> None:
        self.bootstrap_servers = bootstrap_servers

    def stop(self) -> None:
        raise BrokerUnavailable("cannot stop an external broker (KAFKA_BOOTSTRAP_SERVERS)")

    def start(self) -> None:
        raise BrokerUnavailable("cannot start an external broker (KAFKA_BOOTSTRAP_SERVERS)")

    def close(self) -> None:
        pass


class LocalBroker:
    """A single KRaft node from Kafka's jars; stop() and start() keep port and data."""

    kind = "local-kraft"

    def __init__(self) -> None:
        self.cluster = KRaftCluster(1)
        self.cluster.start()
        self.bootstrap_servers = self.cluster.bootstrap_servers

    def stop(self) -> None:
        self.cluster.stop()

    def start(self) -> None:
        self.cluster.restart(1)

    def close(self) -> None:
        self.cluster.close()


class ContainerBroker:
    kind = "testcontainers"

    def __init__(self) -> None:
        try:
            from testcontainers.kafka import KafkaContainer
        except ImportError:  # testcontainers >= 4.15 moved it
            from testcontainers.community.kafka import KafkaContainer
        self.container: Any = KafkaContainer("confluentinc/cp-kafka:7.6.0").with_kraft()
        self.container.start()
        self.bootstrap_servers: str = self.container.get_bootstrap_server()

    def stop(self) -> None:
        self.container.get_wrapped_container().stop()

    def start(self) -> None:
        self.container.get_wrapped_container().start()

    def close(self) -> None:
        self.container.stop()


def _docker_answers() -> str | None:
    """None if a Docker engine answers, else why not."""
    try:
        import docker

        docker.from_env(timeout=3).ping()
    except Exception as exc:  # any failure means: no usable engine
        return f"{type(exc).__name__}: {exc}"
    return None


def obtain_broker() -> Broker:
    tried: list[str] = []
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        return ExternalBroker(external)
    tried.append("KAFKA_BOOTSTRAP_SERVERS: not set")
    started = time.monotonic()
    why_not = _docker_answers()
    if why_not is None:
        try:
            broker: Broker = ContainerBroker()
            _announce(broker, started)
            return broker
        except Exception as exc:  # fall through to the local broker
            tried.append(f"testcontainers: {exc!r}")
    else:
        tried.append(f"Docker engine: {why_not}")
    try:
        broker = LocalBroker()
        _announce(broker, started)
        return broker
    except Exception as exc:
        tried.append(f"local KRaft broker from Kafka's jars: {exc}")
    raise BrokerUnavailable("no Kafka broker could be had:\n  - " + "\n  - ".join(tried))


def _announce(broker: Broker, started: float) -> None:
    took = time.monotonic() - started
    print(
        f"[testbed] Kafka ({broker.kind}) at {broker.bootstrap_servers}, started in {took:.1f}s",
        file=sys.stderr,
        flush=True,
    )


@contextlib.contextmanager
def open_broker() -> Iterator[Broker]:
    broker = obtain_broker()
    try:
        yield broker
    finally:
        broker.close()
