"""An asyncio client for agents: NDJSON updates to the sidecar's socket, replies back."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson

from sidecar.protocol import decode_reply, encode_hello


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self.seq = 0  # the last line's sequence number
        self.replies: dict[int, dict[str, Any]] = {}
        self.ack_times: dict[int, float] = {}  # seq -> monotonic time its reply arrived
        self._arrived = asyncio.Event()
        self._closed = False
        self._pump = asyncio.create_task(self._read_replies())

    async def hello(self, client: str | None, acks: str) -> int:
        return await self.send(encode_hello(client, acks))

    async def send(self, update: dict[str, Any] | bytes) -> int:
        """Write one line (a dict is JSON-encoded); returns its sequence number."""
        data = update if isinstance(update, bytes) else orjson.dumps(update)
        if not data.endswith(b"\n"):
            data += b"\n"
        self._writer.write(data)
        self.seq += 1
        await self._writer.drain()  # the sidecar's backpressure reaches the agent here
        return self.seq

    async def wait_replies(self, seqs: set[int], timeout: float) -> dict[int, dict[str, Any]]:
        """Wait until each of `seqs` has an ack or an error (or the connection closed)."""
        async with asyncio.timeout(timeout):
            while not seqs <= self.replies.keys() and not self._closed:
                self._arrived.clear()
                await self._arrived.wait()
        return {s: self.replies[s] for s in seqs if s in self.replies}

    async def next_reply(self) -> AsyncIterator[dict[str, Any]]:
        seen = 0
        while True:
            items = list(self.replies.values())
            while seen < len(items):
                yield items[seen]
                seen += 1
            if self._closed:
                return
            self._arrived.clear()
            await self._arrived.wait()

    async def _read_replies(self) -> None:
        try:
            while line := await self._reader.readline():
                reply = decode_reply(line)
                seq = int(reply["seq"])
                self.replies[seq] = reply
                self.ack_times[seq] = time.monotonic()
                self._arrived.set()
        except (OSError, ValueError):
            pass
        finally:
            self._closed = True
            self._arrived.set()

    async def finish(self) -> None:
        """Tell the sidecar we are done writing; replies keep arriving until it closes."""
        if self._writer.can_write_eof():
            self._writer.write_eof()

    async def aclose(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()
        self._pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._pump


@contextlib.asynccontextmanager
async def open_client(
    socket_path: Path | str, *, client: str | None = None, acks: str = "none"
) -> AsyncIterator[Client]:
    reader, writer = await asyncio.open_unix_connection(str(socket_path), limit=1 << 22)
    c = Client(reader, writer)
    try:
        if client is not None or acks != "none":
            await c.hello(client, acks)
        yield c
    finally:
        await c.aclose()
