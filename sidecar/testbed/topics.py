"""Fresh topics for tests, the demo and the benchmark: uniquely named, created through
aiokafka's admin client (in `sidecar.sink.kafka`, the one module importing aiokafka), and
returned only once every partition has a leader."""

from __future__ import annotations

import asyncio
import itertools
import os
import struct
import time
import uuid

from sidecar.testbed.base import BrokerError
from sidecar.testbed.probe import Metadata, metadata

_seq = itertools.count(1)


def unique_topic_name(prefix: str = "t") -> str:
    """Unique across test runs sharing a broker: pid, a counter and a random tag."""
    return f"{prefix}-{os.getpid()}-{next(_seq)}-{uuid.uuid4().hex[:6]}"


async def create_topic(
    bootstrap_servers: str,
    *,
    partitions: int = 3,
    replication_factor: int = 1,
    config: dict[str, str] | None = None,
    name: str | None = None,
    timeout: float = 30.0,
) -> str:
    """Create a topic (a unique name unless `name` is given) and wait until it is usable."""
    from sidecar.sink.kafka import create_topic as admin_create_topic

    topic = name or unique_topic_name()
    await admin_create_topic(
        bootstrap_servers,
        topic,
        partitions=partitions,
        replication_factor=replication_factor,
        config=config,
    )
    await asyncio.to_thread(wait_topic_ready, bootstrap_servers, topic, partitions, timeout)
    return topic


def wait_topic_ready(bootstrap_servers: str, topic: str, partitions: int, timeout: float) -> None:
    """Poll Metadata until `topic` has `partitions` partitions, each with a leader."""
    addresses = [a.strip() for a in bootstrap_servers.split(",") if a.strip()]
    deadline = time.monotonic() + timeout
    last = "no broker answered"
    while True:
        for address in addresses:
            try:
                md = metadata(address, [topic])
            except (OSError, ValueError, struct.error) as exc:
                last = f"{address}: {exc!r}"
                continue
            last = _state(md, topic)
            if last == "ready" and len(md.topics[topic]) == partitions:
                return
            break
        if time.monotonic() >= deadline:
            raise BrokerError(f"topic {topic!r} not ready after {timeout:.0f}s: {last}")
        time.sleep(0.1)


def _state(md: Metadata, topic: str) -> str:
    if md.topic_errors.get(topic, 0) != 0:
        return f"topic error code {md.topic_errors[topic]}"
    parts = md.topics.get(topic, {})
    if not parts:
        return "no partitions yet"
    leaderless = sorted(i for i, p in parts.items() if p.leader < 0 or p.error != 0)
    return f"partitions without a leader: {leaderless}" if leaderless else "ready"
