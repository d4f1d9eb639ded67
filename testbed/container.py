"""A Kafka broker in Docker through testcontainers' Kafka module, in KRaft mode.

The module runs Confluent's `cp-kafka` image (Apache Kafka; 8.1.x carries Kafka 4.1);
`SIDECAR_KAFKA_IMAGE` overrides the image. The host port is chosen here and bound
explicitly, so a stop and start of the container keeps the port the broker advertises,
and the container's data survives it.
"""

from __future__ import annotations

import os
import time
from typing import Any

from testbed.base import Broker, free_ports, wait_serving

DEFAULT_IMAGE = "confluentinc/cp-kafka:8.1.0"
_KAFKA_PORT = 9093  # the module's listener for clients outside the container


def _container_class() -> Any:
    try:  # testcontainers >= 4.x: the community module; the old path warns it is deprecated
        from testcontainers.community.kafka import KafkaContainer
    except ImportError:
        from testcontainers.kafka import KafkaContainer
    return KafkaContainer


class ContainerBroker(Broker):
    kind = "testcontainers"

    def __init__(self, image: str | None = None, *, start_timeout: float = 180.0) -> None:
        self.image = image or os.environ.get("SIDECAR_KAFKA_IMAGE") or DEFAULT_IMAGE
        self.start_timeout = start_timeout
        # Raises DockerException at once when no Docker engine answers.
        container = _container_class()(self.image, port=_KAFKA_PORT)
        self.container: Any = container
        self._closed = False
        self.host_port = free_ports(1, host="0.0.0.0")[0]
        (
            container.with_kraft()
            .with_bind_ports(_KAFKA_PORT, self.host_port)
            .with_env("KAFKA_NUM_PARTITIONS", "1")
            .with_env("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "true")
            .with_env("KAFKA_OFFSETS_TOPIC_NUM_PARTITIONS", "5")
            .with_env("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
            .with_env("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1")
            .with_env("KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR", "1")
            .with_env("KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR", "1")
            .with_env("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0")
            .with_env("KAFKA_HEAP_OPTS", "-Xmx512m -Xms256m")
        )
        started = time.monotonic()
        try:
            container.start(timeout=int(start_timeout))
            self.bootstrap_servers: str = container.get_bootstrap_server()
            self._wait_serving()
        except BaseException:
            self.close()
            raise
        self.startup_seconds = time.monotonic() - started

    def describe(self) -> str:
        return f"Kafka ({self.image} via testcontainers, KRaft) at {self.bootstrap_servers}"

    def stop(self) -> None:
        """Stop the container (SIGTERM, SIGKILL after 20 s); it and its data are kept."""
        self.container.get_wrapped_container().stop(timeout=20)

    def start(self) -> None:
        """Start the stopped container again: same host port, same data. The module's start
        script is still in it, and runs again with the same advertised listener."""
        wrapped = self.container.get_wrapped_container()
        wrapped.start()
        wrapped.reload()
        self._wait_serving()

    def close(self) -> None:
        """Remove the container and its volumes."""
        if not self._closed:
            self._closed = True
            self.container.stop()  # a no-op for a container never created

    def _wait_serving(self) -> None:
        def why_down() -> str | None:
            wrapped = self.container.get_wrapped_container()
            wrapped.reload()
            if wrapped.status in ("exited", "dead"):
                logs = wrapped.logs(tail=25).decode(errors="replace")
                return f"container {wrapped.short_id} is {wrapped.status}:\n{logs}"
            return None

        wait_serving(
            self.bootstrap_servers, None, self.start_timeout, alive=why_down, what=self.image
        )
