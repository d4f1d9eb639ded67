"""Test helpers: agentex update builders, an in-process server and a raw socket client."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from sidecar.config import Config
from sidecar.server import Server
from sidecar.sink.base import SinkBase
from sidecar.sink.memory import MemorySink
from testbed.probe import Partition
from testbed.topics import partition_state


def parent(task: str, msg: str) -> dict[str, Any]:
    return {
        "id": msg,
        "task_id": task,
        "content": {"type": "text", "author": "agent", "content": ""},
    }


def start(task: str, msg: str, **extra: Any) -> dict[str, Any]:
    content = {"type": "text", "author": "agent", "content": ""}
    return {"type": "start", "parent_task_message": parent(task, msg), "content": content, **extra}


def text_delta(task: str, msg: str, text: str | None, **extra: Any) -> dict[str, Any]:
    return {
        "type": "delta",
        "parent_task_message": parent(task, msg),
        "delta": {"type": "text", "text_delta": text},
        **extra,
    }


def done(task: str, msg: str, **extra: Any) -> dict[str, Any]:
    return {"type": "done", "parent_task_message": parent(task, msg), **extra}


def full(task: str, msg: str, text: str, **extra: Any) -> dict[str, Any]:
    content = {"type": "text", "author": "agent", "content": text}
    return {"type": "full", "parent_task_message": parent(task, msg), "content": content, **extra}


def line(obj: dict[str, Any]) -> bytes:
    return orjson.dumps(obj) + b"\n"


def make_config(tmp_path: Path, **overrides: Any) -> Config:
    values: dict[str, Any] = {"socket": tmp_path / "sidecar.sock", "http_port": 0}
    values.update(overrides)
    return Config(**values)


@contextlib.asynccontextmanager
async def open_server(
    config: Config, sink: SinkBase | None = None, *, kafka: bool = False
) -> AsyncIterator[Server]:
    """Start a server in this loop (on the memory sink unless `kafka`); shut it down (if
    the test did not) on exit."""
    if sink is None and not kafka:
        sink = MemorySink()
    server = Server(config, sink=sink)
    await server.startup()
    try:
        yield server
    finally:
        if not server.intake.draining:
            await server.shutdown()


class RawClient:
    """Speaks the wire protocol by hand, so tests see exactly what the server sends."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.replies: list[dict[str, Any]] = []

    @classmethod
    async def connect(cls, path: Path) -> RawClient:
        reader, writer = await asyncio.open_unix_connection(str(path), limit=1 << 22)
        return cls(reader, writer)

    async def send(self, *objs: dict[str, Any] | bytes) -> None:
        for obj in objs:
            self.writer.write(obj if isinstance(obj, bytes) else line(obj))
        await self.writer.drain()

    async def read_replies(self, n: int, timeout: float = 10) -> list[dict[str, Any]]:
        async with asyncio.timeout(timeout):
            while len(self.replies) < n:
                raw = await self.reader.readline()
                if not raw:
                    raise ConnectionError(f"closed after {len(self.replies)} replies")
                self.replies.append(orjson.loads(raw))
        return self.replies[:n]

    async def aclose(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


def watch_pause(server: Server) -> asyncio.Event:
    """An event set when the sink asks the sockets to pause (backpressure)."""
    paused = asyncio.Event()
    forward = server.sink.on_pressure

    def on_pressure(p: bool) -> None:
        forward(p)
        if p:
            paused.set()

    server.sink.on_pressure = on_pressure
    return paused


async def until_kafka_state(server: Server, reason: str | None, timeout: float = 60) -> None:
    """Wait until the server has logged Kafka's state as `reason` (None: taking records)."""
    async with asyncio.timeout(timeout):
        while server.kafka_seen != reason:
            server.kafka_changed.clear()
            await server.kafka_changed.wait()


async def until_partition(
    bootstrap: str, topic: str, ok: Callable[[Partition], bool], what: str, timeout: float = 60
) -> Partition:
    """Poll partition 0 of `topic` until `ok` holds of it; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Partition | None = None
    while time.monotonic() < deadline:
        last = await asyncio.to_thread(partition_state, bootstrap, topic)
        if last is not None and ok(last):
            return last
        await asyncio.sleep(0.2)
    pytest.fail(f"{what}: not within {timeout:.0f}s (last: {last})")
