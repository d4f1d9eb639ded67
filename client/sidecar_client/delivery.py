"""What happened to one frame sent through `SidecarClient`: its `Delivery`, and the errors.

A `Delivery` ends in exactly one of:

- an `Ack`: Kafka acknowledged the record that carries the frame (PROTOCOL §3). With
  `acks="terminal"`, a terminal's ack also settles every earlier frame of its stream
  (Kafka keeps a partition's order), with `exact=False`: the partition is right and the
  offset is the terminal's, an upper bound of the frame's own;
- `FrameRejected`: the sidecar answered the frame with an error (`invalid_frame`,
  `stream_closed`, `delivery_failed`, ...): it is not in Kafka, except for
  `delivery_failed` where Kafka refused or timed out on it;
- `NotDelivered`: nobody knows. The connection broke, or the client was closed, before
  an ack came; the frame may or may not be in Kafka. This is how the client never loses
  a frame silently.

Awaiting a Delivery returns its Ack or raises its error. Nobody has to await it: a
failure nobody looked at is not logged as an unretrieved exception (deltas are sent by
the thousand and only terminals are usually awaited); `on_undelivered` on the client
sees every one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

from sidecar_client.protocol.model import StreamKey


class SidecarError(Exception):
    """Base of every error this library raises."""


class BufferFull(SidecarError):
    """The local buffer of frames not yet written to the socket is full: the sidecar has
    been unreachable, or slower than the agent, for longer than the buffer covers."""


class SidecarUnavailable(SidecarError):
    """No connection to the sidecar could be made within the connect timeout."""


class ClientClosed(SidecarError):
    """The client was closed; nothing more can be sent through it."""


class DeliveryError(SidecarError):
    """A frame that did not end in an ack."""

    def __init__(self, message: str, delivery: Delivery | None = None) -> None:
        super().__init__(message)
        self.delivery = delivery


class FrameRejected(DeliveryError):
    """The sidecar answered the frame with an error reply (PROTOCOL §3)."""

    def __init__(self, code: str, message: str, delivery: Delivery | None = None) -> None:
        super().__init__(f"{code}: {message}", delivery)
        self.code = code
        self.reason = message


class NotDelivered(DeliveryError):
    """Not known to be delivered: no ack came before the connection ended."""


@dataclass(frozen=True, slots=True)
class Ack:
    """Where Kafka stored the frame: exact, or (`exact=False`) settled by its stream's
    terminal, whose offset is given."""

    partition: int
    offset: int
    exact: bool = True

    def __str__(self) -> str:
        return f"{self.partition}:{self.offset}"


class Delivery:
    """The outcome of one frame, filled in by the client's reply reader."""

    __slots__ = ("_ack", "_callbacks", "_error", "_future", "key", "kind", "seq")

    def __init__(self, key: StreamKey | None, kind: str | None) -> None:
        self.key = key  # (task_id, message_id), None if the frame is not a stream update
        self.kind = kind  # the update's type, as sent
        self.seq: int | None = None  # its line number on the connection, once written
        self._ack: Ack | None = None
        self._error: DeliveryError | None = None
        self._future: asyncio.Future[Ack] | None = None  # made only when awaited
        self._callbacks: list[Callable[[Delivery], Any]] | None = None

    def done(self) -> bool:
        return self._ack is not None or self._error is not None

    @property
    def ack(self) -> Ack | None:
        return self._ack

    @property
    def error(self) -> DeliveryError | None:
        return self._error

    def result(self) -> Ack:
        """The Ack; raises the error, or `asyncio.InvalidStateError` while pending."""
        if self._error is not None:
            raise self._error
        if self._ack is None:
            raise asyncio.InvalidStateError("the frame's delivery is not settled yet")
        return self._ack

    def add_done_callback(self, callback: Callable[[Delivery], Any]) -> None:
        """Call `callback(self)` once settled (at once if it is already)."""
        if self.done():
            callback(self)
        else:
            if self._callbacks is None:
                self._callbacks = []
            self._callbacks.append(callback)

    async def wait(self, timeout: float | None = None) -> Ack:
        """The Ack, or raise the error; TimeoutError if still pending at the timeout."""
        async with asyncio.timeout(timeout):
            return await self

    def __await__(self) -> Generator[Any, None, Ack]:
        if not self.done():
            if self._future is None:
                self._future = asyncio.get_running_loop().create_future()
            yield from asyncio.shield(self._future).__await__()
        return self.result()

    def __repr__(self) -> str:
        state = self._ack or self._error or "pending"
        return f"<Delivery seq={self.seq} {self.kind} {self.key} {state}>"

    # -- settled by the client ------------------------------------------------------------

    def _resolve(self, ack: Ack) -> None:
        if not self.done():
            self._ack = ack
            self._settled()

    def _fail(self, error: DeliveryError) -> None:
        if not self.done():
            error.delivery = self
            self._error = error
            self._settled()

    def _settled(self) -> None:
        if self._future is not None and not self._future.done():
            # The future only wakes awaiters; the outcome is read from self.
            self._future.set_result(self._ack or Ack(-1, -1, False))
        callbacks, self._callbacks = self._callbacks, None
        for callback in callbacks or ():
            callback(self)
