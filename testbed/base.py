"""What every broker of the test bed offers, its errors, and small shared helpers."""

from __future__ import annotations

import socket
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar, Self

from testbed.probe import broker_ids


class BrokerError(RuntimeError):
    """A broker of the test bed failed (to start, to stop, to answer)."""


class BrokerUnavailable(BrokerError):
    """No Kafka broker could be had; the message names what was tried and why it failed."""


class NotSupported(BrokerError):
    """The broker cannot do this (e.g. stop or restart a broker named by the environment)."""


class Broker(ABC):
    """A running Kafka broker (or cluster). Constructing one starts it; `close()` stops it and
    removes its data. `stop()` then `start()` restarts it on the same port(s) and data."""

    kind: ClassVar[str]
    bootstrap_servers: str
    startup_seconds: float = 0.0  # how long the first start took

    @abstractmethod
    def stop(self) -> None: ...

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    def describe(self) -> str:
        return f"Kafka ({self.kind}) at {self.bootstrap_servers}"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def say(message: str) -> None:
    """One short line to stderr: what the test bed chose and how long it took."""
    print(f"[testbed] {message}", file=sys.stderr, flush=True)


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """`n` distinct ports free right now (all held open together, so none repeats)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.socket()
            socks.append(s)
            s.bind((host, 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def port_accepts(address: str, timeout: float = 1.0) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return True
    except OSError:
        return False


def wait_serving(
    address: str,
    node_id: int | None,
    timeout: float,
    *,
    alive: Callable[[], str | None] = lambda: None,
    what: str = "Kafka broker",
) -> None:
    """Wait until the broker at `address` answers a Metadata request listing `node_id` (any
    broker if None): it is registered and unfenced. `alive()` returns why the broker can no
    longer come up (e.g. its process exited), or None while it still may."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        why = alive()
        if why is not None:
            raise BrokerError(f"{what} at {address} will not come up: {why}")
        ids = broker_ids(address)
        if ids and (node_id is None or node_id in ids):
            return
        if time.monotonic() >= deadline:
            raise BrokerError(f"{what} at {address} not serving after {timeout:.0f}s")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.25)
