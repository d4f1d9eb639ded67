"""Which Kafka broker a test run, the demo or the benchmark gets, tried in order:

1. `KAFKA_BOOTSTRAP_SERVERS` names one: use it (it cannot be stopped or started from here).
2. A Docker engine answers: testcontainers' Kafka module, in KRaft mode.
3. Otherwise: a single-node KRaft broker run from Apache Kafka's own jars (Java + Maven).

When none works, BrokerUnavailable names what was tried and why each failed.
`SIDECAR_TESTBED=testcontainers` (or `kraft`) takes that branch only and fails instead of
falling back, so a run meant to prove one branch cannot quietly use another.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator

from testbed.base import Broker, BrokerUnavailable, NotSupported, say
from testbed.probe import broker_ids

ENV_BOOTSTRAP = "KAFKA_BOOTSTRAP_SERVERS"
ENV_ONLY = "SIDECAR_TESTBED"
BRANCHES = ("testcontainers", "kraft")


class ExternalBroker(Broker):
    """A broker named by KAFKA_BOOTSTRAP_SERVERS: used as it is, never stopped or removed."""

    kind = "external"

    def __init__(self, bootstrap_servers: str, *, timeout: float = 30.0) -> None:
        self.bootstrap_servers = bootstrap_servers
        addresses = [a.strip() for a in bootstrap_servers.split(",") if a.strip()]
        if not addresses:
            raise BrokerUnavailable(f"{ENV_BOOTSTRAP}={bootstrap_servers!r} names no broker")
        deadline = time.monotonic() + timeout
        while not any(broker_ids(a) for a in addresses):
            if time.monotonic() >= deadline:
                raise BrokerUnavailable(
                    f"{ENV_BOOTSTRAP}={bootstrap_servers}: no broker there answered a Kafka "
                    f"Metadata request within {timeout:.0f}s"
                )
            time.sleep(0.5)

    def describe(self) -> str:
        return f"Kafka at {self.bootstrap_servers} (from {ENV_BOOTSTRAP})"

    def stop(self) -> None:
        raise NotSupported(
            f"the broker named by {ENV_BOOTSTRAP} cannot be stopped by the test bed; "
            "use obtain_broker(own=True) for a broker of your own"
        )

    def start(self) -> None:
        raise NotSupported(
            f"the broker named by {ENV_BOOTSTRAP} cannot be started by the test bed; "
            "use obtain_broker(own=True) for a broker of your own"
        )

    def close(self) -> None:
        pass  # not ours


def obtain_broker(*, own: bool = False) -> Broker:
    """A running broker, by the order above. `own=True` skips KAFKA_BOOTSTRAP_SERVERS: the
    caller needs a broker it may stop and start. The caller closes it (or `open_broker`)."""
    tried: list[str] = []
    started = time.monotonic()
    only = os.environ.get(ENV_ONLY, "").strip()
    if only and only not in BRANCHES:
        raise BrokerUnavailable(f"{ENV_ONLY}={only!r}: expected one of {', '.join(BRANCHES)}")
    external = "" if only else os.environ.get(ENV_BOOTSTRAP, "").strip()
    if external and not own:
        try:
            broker: Broker = ExternalBroker(external)
        except BrokerUnavailable as exc:
            raise BrokerUnavailable(f"no Kafka broker could be had: {exc}") from exc
        return _chosen(broker, started, tried)
    why = "ignored, a broker of our own is needed" if external else "not set"
    tried.append(f"{ENV_BOOTSTRAP}: {why}" if not only else f"{ENV_ONLY}={only}")
    if only != "kraft":
        try:
            from testbed.container import ContainerBroker

            broker = ContainerBroker()
            return _chosen(broker, started, tried)
        except ImportError as exc:
            tried.append(f"Docker: testcontainers is not installed ({exc})")
        except Exception as exc:  # no engine (DockerException at once), or the container failed
            tried.append(f"Docker (testcontainers): {type(exc).__name__}: {_short(exc)}")
        if only:
            raise BrokerUnavailable("no Kafka broker could be had: " + "; ".join(tried))
    try:
        from testbed.kraft import KRaftCluster

        broker = KRaftCluster(1)
        return _chosen(broker, started, tried)
    except Exception as exc:
        tried.append(f"local KRaft broker from Kafka's jars: {type(exc).__name__}: {exc}")
    raise BrokerUnavailable(
        "no Kafka broker could be had. Tried, in order:\n  - "
        + "\n  - ".join(tried)
        + f"\nSet {ENV_BOOTSTRAP}=host:port to use a running broker, or install Java 17+ and "
        "Maven (the local broker), or run a Docker engine."
    )


@contextlib.contextmanager
def open_broker(*, own: bool = False) -> Iterator[Broker]:
    """`obtain_broker()` as a context manager: the broker is closed (stopped, its data
    removed) at the end, unless it is an external one."""
    broker = obtain_broker(own=own)
    try:
        yield broker
    finally:
        broker.close()


def _chosen(broker: Broker, started: float, tried: list[str]) -> Broker:
    took = time.monotonic() - started
    skipped = f" (skipped: {'; '.join(tried)})" if tried else ""
    say(f"using {broker.describe()}, ready in {took:.1f}s{skipped}")
    return broker


def _short(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
