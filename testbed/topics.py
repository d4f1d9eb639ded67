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

from testbed.base import BrokerError
from testbed.probe import Metadata, Partition, metadata

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
    """Poll Metadata until every answering broker shows `topic` with `partitions`
    partitions, each with a leader.

    Asking every broker matters on a cluster: each applies the topic's metadata on
    its own schedule, and a client whose first request lands on a lagging one sees
    the topic without partitions.
    """
    addresses = [a.strip() for a in bootstrap_servers.split(",") if a.strip()]
    deadline = time.monotonic() + timeout
    while True:
        ready, waiting, unreachable = 0, [], []  # a down broker does not hold this up
        for address in addresses:
            try:
                md = metadata(address, [topic])
            except (OSError, ValueError, struct.error) as exc:
                unreachable.append(f"{address}: {exc!r}")
                continue
            state = _state(md, topic)
            if state == "ready" and len(md.topics[topic]) != partitions:
                state = f"{len(md.topics[topic])} of {partitions} partitions"
            if state == "ready":
                ready += 1
            else:
                waiting.append(f"{address}: {state}")
        if ready and not waiting:
            return
        if time.monotonic() >= deadline:
            last = waiting or unreachable
            raise BrokerError(f"topic {topic!r} not ready after {timeout:.0f}s: {last}")
        time.sleep(0.1)


def partition_state(bootstrap_servers: str, topic: str, partition: int = 0) -> Partition | None:
    """The partition's leader and ISR as the first broker that answers sees them; None
    while none answers or that one has not applied the topic's metadata yet."""
    for address in bootstrap_servers.split(","):
        try:
            md = metadata(address.strip(), [topic])
        except (OSError, ValueError, struct.error):  # e.g. a node just killed
            continue
        return md.topics.get(topic, {}).get(partition)
    return None


def _state(md: Metadata, topic: str) -> str:
    if md.topic_errors.get(topic, 0) != 0:
        return f"topic error code {md.topic_errors[topic]}"
    parts = md.topics.get(topic, {})
    if not parts:
        return "no partitions yet"
    leaderless = sorted(i for i, p in parts.items() if p.leader < 0 or p.error != 0)
    return f"partitions without a leader: {leaderless}" if leaderless else "ready"
