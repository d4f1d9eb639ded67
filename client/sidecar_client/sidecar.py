"""The agent's client: updates to the sidecar, delivery outcomes back (PROTOCOL §2-3).

    async with open_sidecar(client="my-agent/1.0") as sidecar:
        await sidecar.send(start_update)
        await sidecar.send(delta_update)          # returns once written: backpressure only
        ack = await (await sidecar.send(done_update))   # Kafka acknowledged the stream

- **Lazy connect**: nothing happens until the first frame. **Reconnect**: a broken
  connection is replaced on the next frame, with exponential backoff between attempts
  (`backoff_initial` doubling up to `backoff_max`), for at most `connect_timeout`
  seconds; then the waiting frames fail with `SidecarUnavailable`.
- **Backpressure**: `send` returns once its frame is queued and the queue is below
  `high_water` bytes; the queue is written to the socket by one writer task, which
  waits whenever the socket is full (the sidecar stops reading when its Kafka backlog is
  full, PROTOCOL §6). So a slow sidecar makes `send` wait, and the agent's memory does
  not grow. `send_nowait` never waits: it queues up to `max_buffer_bytes` and then
  raises `BufferFull`.
- **Acks**: every connection starts with a `hello` asking for `acks` (`terminal`, the
  default, or `all`). Each `send` returns a `Delivery` that ends in an `Ack`, a
  `FrameRejected` or a `NotDelivered` (see `sidecar_client.delivery`).
- **Nothing is lost silently**: frames still queued when a connection breaks are sent on
  the next one (they never reached the sidecar); frames written to the broken one and
  not yet acknowledged fail with `NotDelivered` (they may or may not be in Kafka), and
  `on_undelivered` is called for each. The client never re-sends a written frame: that
  could duplicate it in Kafka.

After a sidecar restart the new sidecar knows nothing of the old streams: a delta of a
stream that was open reopens it implicitly (PROTOCOL §2.2), under a new
`sidecar_instance` header, so the agent can go on streaming.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import orjson

from sidecar_client.client import READ_LIMIT, Client, Reply
from sidecar_client.delivery import (
    Ack,
    BufferFull,
    ClientClosed,
    Delivery,
    FrameRejected,
    NotDelivered,
    SidecarUnavailable,
)
from sidecar_client.protocol import encode_hello
from sidecar_client.protocol.model import TERMINAL_KINDS, AckMode, StreamKey

log = logging.getLogger("sidecar_client")

Sendable = Mapping[str, Any] | bytes | Any  # a dict, an NDJSON line, or a pydantic model


def default_socket_path() -> Path:
    """`SIDECAR_SOCKET`, else the sidecar's default (PROTOCOL §1):
    `$XDG_RUNTIME_DIR/sidecar.sock`, else `/run/sidecar/sidecar.sock`."""
    env = os.environ.get("SIDECAR_SOCKET")
    if env:
        return Path(env)
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    return Path(runtime) / "sidecar.sock" if runtime else Path("/run/sidecar/sidecar.sock")


def encode_update(update: Sendable) -> tuple[bytes, StreamKey | None, str | None]:
    """One NDJSON line (without its newline), the stream it belongs to and its type.

    A dict is encoded by orjson; bytes are taken as they are (one line); anything with
    `model_dump` (an agentex TaskMessageUpdate) is dumped as agentex itself does.
    """
    if isinstance(update, bytes | bytearray | memoryview):
        line = bytes(update).removesuffix(b"\n")
        if b"\n" in line:
            raise ValueError("an update must be a single line")
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            return line, None, None  # sent all the same: the sidecar answers invalid_json
    else:
        obj = update.model_dump(mode="json") if hasattr(update, "model_dump") else update
        line = orjson.dumps(obj)
    if not isinstance(obj, Mapping):
        return line, None, None
    kind = obj.get("type")
    ptm = obj.get("parent_task_message")
    key: StreamKey | None = None
    if isinstance(ptm, Mapping):
        task_id, message_id = ptm.get("task_id"), ptm.get("id")
        if isinstance(task_id, str) and isinstance(message_id, str):
            key = (task_id, message_id)
    return line, key, kind if isinstance(kind, str) else None


class _Link:
    """One connection and the frames written to it that still wait for their outcome."""

    def __init__(self, acks: AckMode) -> None:
        self.conn: Client | None = None
        self.acks = acks
        self.closed = False
        self.inflight: dict[int, Delivery] = {}  # seq -> frame written, not settled
        self.streams: dict[StreamKey, dict[int, None]] = {}  # stream -> its inflight seqs
        self.awaited = 0  # inflight frames that will get a reply (terminals, or all)
        self.quiet = asyncio.Event()  # set while awaited == 0
        self.quiet.set()

    def expects_reply(self, d: Delivery) -> bool:
        return self.acks == "all" or d.kind in TERMINAL_KINDS

    def track(self, d: Delivery) -> None:
        assert d.seq is not None
        self.inflight[d.seq] = d
        if d.key is not None:
            self.streams.setdefault(d.key, {})[d.seq] = None
        if self.expects_reply(d):
            self.awaited += 1
            self.quiet.clear()

    def pop(self, seq: int) -> Delivery | None:
        d = self.inflight.pop(seq, None)
        if d is None:
            return None
        if d.key is not None:
            seqs = self.streams.get(d.key)
            if seqs is not None:
                seqs.pop(seq, None)
                if not seqs:
                    del self.streams[d.key]
        if self.expects_reply(d):
            self.awaited -= 1
            if self.awaited == 0:
                self.quiet.set()
        return d

    def pop_stream(self, key: StreamKey) -> list[Delivery]:
        """The stream's inflight frames (earlier than anything just settled), in order."""
        seqs = list(self.streams.get(key, ()))
        return [d for d in map(self.pop, seqs) if d is not None]


class SidecarClient:
    """A reconnecting client for the sidecar's socket. Use `open_sidecar`, or call
    `aclose()` when done. Not thread-safe: see `sidecar_client.sync` for threads."""

    def __init__(
        self,
        socket_path: Path | str | None = None,
        *,
        client: str | None = None,
        acks: AckMode = "terminal",
        high_water: int = 64 * 1024,
        max_buffer_bytes: int = 4 * 1024 * 1024,
        connect_timeout: float = 30.0,
        backoff_initial: float = 0.05,
        backoff_max: float = 2.0,
        on_undelivered: Callable[[Delivery], Any] | None = None,
    ) -> None:
        if acks not in ("terminal", "all"):
            # With no acks nothing could ever be reported delivered.
            raise ValueError(f"acks must be 'terminal' or 'all', not {acks!r}")
        if not 0 < high_water <= max_buffer_bytes:
            raise ValueError("need 0 < high_water <= max_buffer_bytes")
        self.socket_path = Path(socket_path) if socket_path else default_socket_path()
        self.client_name = client
        self.acks: AckMode = acks
        self.high_water = high_water
        self.max_buffer_bytes = max_buffer_bytes
        self.connect_timeout = connect_timeout
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.on_undelivered = on_undelivered
        self.connects = 0  # connections made (the first one included)
        self.undelivered = 0  # deliveries that ended without an ack
        self._queue: deque[tuple[bytes, Delivery]] = deque()
        self._queued_bytes = 0
        self._room = asyncio.Event()  # set while the queue is below high_water
        self._room.set()
        self._wake = asyncio.Event()  # the writer has something to do
        self._writer: asyncio.Task[None] | None = None
        self._link: _Link | None = None
        self._closing = False
        self._closed = False

    @property
    def buffered_bytes(self) -> int:
        """Bytes queued locally, not yet written to the socket."""
        return self._queued_bytes

    @property
    def unsent_bytes(self) -> int:
        """Bytes held in this process: queued, plus written but not taken by the socket."""
        link = self._link
        held = (
            0 if link is None or link.closed or link.conn is None else link.conn.write_buffer_size
        )
        return self._queued_bytes + held

    @property
    def connected(self) -> bool:
        return self._link is not None and not self._link.closed

    # -- sending -------------------------------------------------------------------------

    async def send(self, update: Sendable) -> Delivery:
        """Queue one update, waiting first while the queue is at `high_water` (the socket
        is full or the sidecar unreachable). Returns its Delivery; await that for the ack
        (a terminal's, with `acks="terminal"`)."""
        while self._queued_bytes >= self.high_water and not self._closing:
            self._room.clear()
            await self._room.wait()
        return self.send_nowait(update)

    def send_nowait(self, update: Sendable) -> Delivery:
        """Queue one update without waiting; `BufferFull` past `max_buffer_bytes`."""
        if self._closing:
            raise ClientClosed("the sidecar client is closed")
        line, key, kind = encode_update(update)
        size = len(line) + 1
        if self._queued_bytes + size > self.max_buffer_bytes:
            raise BufferFull(
                f"{self._queued_bytes} bytes wait to be written to the sidecar at "
                f"{self.socket_path} and this frame would pass max_buffer_bytes "
                f"({self.max_buffer_bytes}): the sidecar is unreachable or slower than the "
                "agent (use `await send()` to wait for room instead)"
            )
        d = Delivery(key, kind)
        self._queue.append((line + b"\n", d))
        self._queued_bytes += size
        self._wake.set()
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_loop(), name="sidecar-client-writer")
        return d

    async def flush(self, timeout: float | None = None) -> None:
        """Wait until every queued frame is written and every frame that will be
        acknowledged (terminals, or all with `acks="all"`) has its outcome."""
        async with asyncio.timeout(timeout):
            while True:
                while self._queue:
                    self._room.clear()
                    await self._room.wait()
                link = self._link
                if link is None or link.closed or link.quiet.is_set():
                    if not self._queue:
                        return
                    continue
                await link.quiet.wait()

    # -- the writer task -----------------------------------------------------------------

    async def _write_loop(self) -> None:
        try:
            await self._write_forever()
        except Exception as exc:
            # A bug, not an outage: say so, and fail what waits rather than hang senders.
            log.exception("sidecar client writer failed")
            self._writer = None  # the next frame starts a new writer
            self._fail_queue(SidecarUnavailable(f"the client's writer failed: {exc!r}"))

    async def _write_forever(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            link = self._link
            if link is None or link.closed:
                try:
                    link = await self._connect()
                except SidecarUnavailable as exc:
                    self._fail_queue(exc)
                    continue
            await self._write_some(link)

    async def _write_some(self, link: _Link) -> None:
        conn = link.conn
        assert conn is not None
        queue = self._queue
        while queue and not link.closed:
            line, d = queue.popleft()
            self._queued_bytes -= len(line)
            d.seq = conn.write(line)
            link.track(d)
            if self._queued_bytes < self.high_water:
                self._room.set()
            if conn.write_buffer_size > self.high_water:
                # The socket is full: wait for the sidecar to read (its backpressure).
                try:
                    await conn.drain()
                except (ConnectionError, OSError):
                    break  # the reader fails what was written; the queue waits
        if not queue:
            self._room.set()

    async def _connect(self) -> _Link:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.connect_timeout
        delay = self.backoff_initial
        while True:
            try:
                return await self._open_link()
            except OSError as exc:
                if loop.time() + delay > deadline:
                    raise SidecarUnavailable(
                        f"cannot connect to the sidecar at {self.socket_path}: {exc} "
                        f"(retried for {self.connect_timeout:g} s)"
                    ) from exc
                log.debug(
                    "sidecar at %s unreachable (%s); retry in %.2fs", self.socket_path, exc, delay
                )
            # Jittered, so agents restarted together do not reconnect in lockstep.
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, self.backoff_max)

    async def _open_link(self) -> _Link:
        link = _Link(self.acks)
        reader, writer = await asyncio.open_unix_connection(str(self.socket_path), limit=READ_LIMIT)
        link.conn = Client(
            reader,
            writer,
            on_reply=lambda reply: self._on_reply(link, reply),
            on_close=lambda: self._on_close(link),
        )
        link.conn.write(encode_hello(self.client_name, self.acks))  # line 1
        self._link = link
        self.connects += 1
        if self.connects > 1:
            log.info("reconnected to the sidecar at %s", self.socket_path)
        return link

    # -- outcomes ------------------------------------------------------------------------

    def _on_reply(self, link: _Link, reply: Reply) -> None:
        seq = reply["seq"]
        d = link.pop(seq)
        if d is None:
            return  # the hello's, or a reply for a line already settled
        if reply["type"] == "ack":
            ack = Ack(reply["partition"], reply["offset"])
            if d.kind in TERMINAL_KINDS and d.key is not None:
                # Everything of the stream before its terminal is in Kafka too.
                implied = Ack(ack.partition, ack.offset, exact=False)
                for earlier in link.pop_stream(d.key):
                    earlier._resolve(implied)
            d._resolve(ack)
            return
        code = reply["code"]
        self._failed(d, FrameRejected(code, reply["message"]))
        if d.key is not None and (d.kind in TERMINAL_KINDS or code == "delivery_failed"):
            # The stream ended badly: what was written before is not known to be in Kafka.
            for earlier in link.pop_stream(d.key):
                self._failed(earlier, NotDelivered(f"its stream's frame {seq} got {code}"))

    def _on_close(self, link: _Link) -> None:
        link.closed = True
        lost = [d for d in map(link.pop, list(link.inflight)) if d is not None]
        if lost and not self._closed:
            log.warning(
                "connection to the sidecar at %s ended with %d frame(s) not acknowledged; "
                "they are reported as not known to be delivered",
                self.socket_path,
                len(lost),
            )
        why = "the client was closed" if self._closed else "the connection to the sidecar broke"
        for d in lost:
            self._failed(d, NotDelivered(f"{why} before Kafka acknowledged frame {d.seq}"))
        self._room.set()  # wake a flush() waiting on this link
        self._wake.set()  # the writer reconnects if frames are queued

    def _failed(self, d: Delivery, error: FrameRejected | NotDelivered) -> None:
        self.undelivered += 1
        d._fail(error)
        if self.on_undelivered is not None:
            try:
                self.on_undelivered(d)
            except Exception:
                log.exception("on_undelivered callback failed")

    def _fail_queue(self, exc: SidecarUnavailable) -> None:
        while self._queue:
            _, d = self._queue.popleft()
            self._failed(d, NotDelivered(str(exc)))
        self._queued_bytes = 0
        self._room.set()

    # -- closing -------------------------------------------------------------------------

    async def aclose(self, timeout: float | None = 10.0) -> None:
        """Write what is queued, wait up to `timeout` for the acks still owed, close.

        Frames then still unacknowledged fail with `NotDelivered`. Streams left open are
        ended by the sidecar (`disconnect`).
        """
        if self._closed:
            return
        self._closing = True
        self._wake.set()
        with contextlib.suppress(TimeoutError):
            await self.flush(timeout)
        self._closed = True
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        if self._queue:
            self._fail_queue(SidecarUnavailable("the client was closed before writing it"))
        link = self._link
        if link is not None and link.conn is not None:
            await link.conn.aclose()  # its reader's end fails what is still inflight


@contextlib.asynccontextmanager
async def open_sidecar(
    socket_path: Path | str | None = None, **options: Any
) -> AsyncIterator[SidecarClient]:
    """A `SidecarClient` closed on exit (see its arguments)."""
    sidecar = SidecarClient(socket_path, **options)
    try:
        yield sidecar
    finally:
        await sidecar.aclose()
