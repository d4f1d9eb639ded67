"""An asyncio client for agents: NDJSON updates to the sidecar's socket, replies back
(PROTOCOL §2-3).

    async with open_client("/tmp/sidecar.sock", client="my-agent/1.0", acks="terminal") as c:
        await c.send(start_update)
        await c.send_many(delta_updates)
        seq = await c.send(done_update)
        replies = await c.wait_acks([seq], timeout=10)

Every line written gets the next sequence number, counting from 1 as the sidecar does
(the hello, when one is sent, is line 1). `send` waits for the socket to drain, so when
the sidecar pushes back (its Kafka backlog is full) the agent slows down instead of
buffering without bound.

A reply is handed out once: to a `wait_acks` call that asks for its seq, or else to a
`replies()` iteration. Replies nobody has taken are kept, so an agent that asks for acks
should consume them one way or the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast, get_args

import orjson

from sidecar_client.protocol import decode_reply, encode_hello
from sidecar_client.protocol.model import TERMINAL_KINDS, AckMode

Update = dict[str, Any] | bytes
Reply = dict[str, Any]
ACK_MODES: tuple[str, ...] = get_args(AckMode)
READ_LIMIT = 1 << 20  # longest reply line accepted; the sidecar's are ~100 bytes


def expects_ack(acks: AckMode, update: Update) -> bool:
    """Whether the sidecar acks this line under `acks` (it may still answer with an error)."""
    if acks == "none":
        return False
    try:
        obj = orjson.loads(update) if isinstance(update, bytes) else update
    except orjson.JSONDecodeError:
        return acks == "all"  # it will be answered, by an invalid_json error
    kind = obj.get("type") if isinstance(obj, dict) else None
    if acks == "all":
        return kind != "hello"
    return kind in TERMINAL_KINDS


@dataclass(eq=False)
class _Waiter:
    want: set[int]
    got: dict[int, Reply] = field(default_factory=dict)
    done: asyncio.Event = field(default_factory=asyncio.Event)


class Client:
    """One connection to the sidecar. Made by `open_client`.

    `on_reply`, when given, takes every reply instead of `wait_acks`/`replies()`, and
    `on_close` is called once when the connection ends (the reconnecting client in
    `sidecar_client.sidecar` drives its deliveries from these two).
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        acks: AckMode = "none",
        *,
        on_reply: Callable[[Reply], None] | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.acks: AckMode = acks  # the mode in force on this connection
        self.seq = 0  # the last line's sequence number
        self.errors = 0  # error replies received so far
        self._reader = reader
        self._writer = writer
        self._on_reply = on_reply
        self._on_close = on_close
        self._unclaimed: OrderedDict[int, Reply] = OrderedDict()
        self._waiters: list[_Waiter] = []
        self._arrived = asyncio.Event()
        self._closed = False
        self._odd_keys = itertools.count(-1, -1)  # keys for replies without an integer seq
        self._pump = asyncio.create_task(self._read_replies(), name="sidecar-client-replies")

    @property
    def closed(self) -> bool:
        """True once the sidecar has closed the connection (or `aclose` was called)."""
        return self._closed

    # -- sending -------------------------------------------------------------------------

    async def send(self, update: Update) -> int:
        """Write one line (a dict is JSON-encoded); returns its sequence number."""
        self._write(update)
        await self._writer.drain()
        return self.seq

    async def send_many(self, updates: Iterable[Update]) -> range:
        """Write several lines in one write, then wait for the socket once; returns their
        seqs. (One write: the sidecar reads them together, instead of a system call and
        a wake-up per line on both sides.)"""
        first = self.seq + 1
        lines: list[bytes] = []
        try:
            for update in updates:
                lines.append(self._line(update))
        finally:  # a bad update raises: the lines before it go out, as counted
            self._writer.write(b"".join(lines))
        await self._writer.drain()
        return range(first, self.seq + 1)

    def write(self, update: Update) -> int:
        """Write one line without waiting for the socket; returns its sequence number.
        Call `drain` to wait for room (backpressure)."""
        self._write(update)
        return self.seq

    @property
    def write_buffer_size(self) -> int:
        """Bytes written but not yet taken by the socket."""
        return self._writer.transport.get_write_buffer_size()

    async def drain(self) -> None:
        """Wait until the socket takes what was written (raises on a broken connection)."""
        await self._writer.drain()

    def _write(self, update: Update) -> None:
        self._writer.write(self._line(update))

    def _line(self, update: Update) -> bytes:
        """The update as one line, newline included; counts it (`seq`)."""
        if isinstance(update, bytes):
            data = update[:-1] if update.endswith(b"\n") else update
            # One call, one line: an inner newline would shift every later seq.
            if b"\n" in data:
                raise ValueError("an update must be a single line")
        else:
            data = orjson.dumps(update)  # never emits a raw newline
        if self.seq == 0:
            self._note_hello(update)
        self.seq += 1
        return data + b"\n"

    def _note_hello(self, update: Update) -> None:
        # A hello passed through `send` as line 1 sets the mode just as open_client's does.
        if isinstance(update, bytes) and b"hello" not in update:
            return
        with contextlib.suppress(orjson.JSONDecodeError):
            obj = orjson.loads(update) if isinstance(update, bytes) else update
            if isinstance(obj, dict) and obj.get("type") == "hello":
                acks = obj.get("acks") or "none"
                if acks in ACK_MODES:
                    self.acks = cast(AckMode, acks)

    def finish(self) -> None:
        """No more lines: the sidecar ends this connection's open streams (`disconnect`)
        and closes it, so replies still owed for earlier lines may never come."""
        if not self._closed and self._writer.can_write_eof():
            self._writer.write_eof()

    # -- replies ---------------------------------------------------------------------------

    async def replies(self) -> AsyncIterator[Reply]:
        """Replies not taken by `wait_acks`, in arrival order, until the connection closes."""
        while True:
            while self._unclaimed:
                yield self._unclaimed.popitem(last=False)[1]
            if self._closed:
                return
            self._arrived.clear()
            await self._arrived.wait()

    async def wait_acks(self, seqs: Iterable[int], timeout: float | None) -> dict[int, Reply]:
        """Wait until every seq in `seqs` has a reply (an ack or an error); returns them.

        Stops early, returning what it has, at the timeout or when the connection
        closes: a seq missing from the result got no reply.
        """
        waiter = _Waiter(set(seqs))
        for seq in list(waiter.want):
            reply = self._unclaimed.pop(seq, None)
            if reply is not None:
                waiter.got[seq] = reply
                waiter.want.discard(seq)
        if not waiter.want or self._closed:
            return waiter.got
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(timeout):
                await waiter.done.wait()
        except TimeoutError:
            pass
        finally:
            self._waiters.remove(waiter)
        return waiter.got

    async def wait_closed(self, timeout: float | None) -> bool:
        """Wait for the sidecar to close the connection; False at the timeout."""
        if self._closed:
            return True
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(self._pump)
        except TimeoutError:
            return False
        return True

    async def _read_replies(self) -> None:
        try:
            while line := await self._reader.readline():
                try:
                    reply = decode_reply(line)
                except ValueError:
                    continue  # a reply type this client does not know: forward-compatible
                self._deliver(reply)
        except (OSError, ValueError):
            pass  # reset, or a line past READ_LIMIT: the connection is unusable either way
        finally:
            self._closed = True
            self._arrived.set()
            for waiter in self._waiters:
                waiter.done.set()
            if self._on_close is not None:
                self._on_close()

    def _deliver(self, reply: Reply) -> None:
        if reply["type"] == "error":
            self.errors += 1
        if self._on_reply is not None:
            self._on_reply(reply)
            return
        seq = reply.get("seq")
        if type(seq) is not int:
            seq = next(self._odd_keys)  # still yielded by replies(), never awaited
        for waiter in self._waiters:
            if seq in waiter.want:
                waiter.got[seq] = reply
                waiter.want.discard(seq)
                if not waiter.want:
                    waiter.done.set()
                return
        self._unclaimed[seq] = reply
        self._arrived.set()

    async def aclose(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()
        self._pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._pump


@contextlib.asynccontextmanager
async def open_client(
    socket_path: Path | str, *, client: str | None = None, acks: AckMode = "none"
) -> AsyncIterator[Client]:
    """Connect to the sidecar; a hello (line 1) is sent when `client` or `acks` is given."""
    if acks not in ACK_MODES:
        raise ValueError(f"acks must be one of {', '.join(ACK_MODES)}, not {acks!r}")
    reader, writer = await asyncio.open_unix_connection(str(socket_path), limit=READ_LIMIT)
    conn = Client(reader, writer)
    try:
        if client is not None or acks != "none":
            await conn.send(encode_hello(client, acks))
        yield conn
    finally:
        await conn.aclose()
