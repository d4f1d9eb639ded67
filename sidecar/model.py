"""Plain data shared along the data path: decoded frames in, records out.

No asyncio and no Kafka here, so the protocol, the coalescer, the sinks and the tests
all speak the same types.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

# The protocol's own types live with the protocol (in the sidecar-client distribution);
# re-exported here so the data path imports its types from one place.
from sidecar_client.protocol.model import (
    TERMINAL_KINDS,
    AckMode,
    Hello,
    StreamKey,
    Update,
    UpdateKind,
)
from sidecar_client.protocol.replies import ErrorCode

__all__ = [
    "TERMINAL_KINDS",
    "AckMode",
    "AckToken",
    "Clock",
    "Emit",
    "Hello",
    "Record",
    "ReplyTarget",
    "StreamKey",
    "TerminalReason",
    "TimerHandle",
    "Update",
    "UpdateKind",
]

TerminalReason = Literal["client", "disconnect", "idle_timeout", "shutdown", "delivery_failed"]


class ReplyTarget(Protocol):
    """Where delivery outcomes of a line go: the connection that sent it."""

    def send_ack(self, seq: int, partition: int, offset: int) -> None: ...

    def send_error(self, seq: int, code: ErrorCode, message: str) -> None: ...


@dataclass(slots=True)
class AckToken:
    """A line waiting to hear about the record that carries it."""

    target: ReplyTarget
    seq: int


class Record:
    """One Kafka record, ready to produce (key = task_id), and its delivery state.

    The same object travels from the coalescer through the sink's outbox into a batch
    and back out as acks, so a pending record costs one object: `size`, `submitted_at`,
    `partition` and `solo` belong to the sink and are set when it accepts the record.
    """

    __slots__ = (
        "acks",
        "deltas",
        "first_delta_at",
        "kind",
        "line_seq",
        "message_id",
        "partition",
        "size",
        "solo",
        "stream_seq",
        "submitted_at",
        "task_id",
        "terminal_reason",
        "value",
        "writer",
        "writer_uid",
    )

    def __init__(
        self,
        task_id: str,
        message_id: str,
        kind: UpdateKind,
        value: bytes,
        stream_seq: int,
        terminal_reason: TerminalReason | None = None,
        acks: Sequence[AckToken] = (),
        deltas: int = 0,
        first_delta_at: float | None = None,
        writer_uid: int = 0,
        writer: ReplyTarget | None = None,
        line_seq: int = 0,
    ) -> None:
        self.task_id = task_id
        self.message_id = message_id
        self.kind = kind
        self.value = value
        self.stream_seq = stream_seq  # 0-based position among the stream's records
        self.terminal_reason = terminal_reason
        self.acks = acks  # the lines waiting to hear about this record
        self.deltas = deltas  # how many delta lines this record carries (metrics)
        # Loop time the stream's first delta was read, set only on the record carrying it
        # (the first-delta latency metric).
        self.first_delta_at = first_delta_at
        self.writer_uid = writer_uid  # the peer uid of the connection that wrote it
        # Who to tell if it finally fails, whatever its acks (PROTOCOL §5): the connection
        # that owned the stream, and its line number of the stream's latest frame.
        self.writer = writer
        self.line_seq = line_seq
        # Set by the sink on submit: bytes counted against --max-pending-bytes, loop time,
        # the partition it goes to, and whether it must travel in a batch of its own.
        self.size = 0
        self.submitted_at = 0.0
        self.partition = -1
        self.solo = False

    def __repr__(self) -> str:
        return (
            f"Record({self.task_id!r}, {self.message_id!r}, {self.kind!r}, "
            f"seq={self.stream_seq}, {len(self.value)} bytes)"
        )

    @property
    def urgent(self) -> bool:
        """A record someone is waiting for: a stream's first delta (the time to first
        token) or its terminal (the end of a turn, often awaited by the agent). The sink
        sends these without waiting out --linger-ms."""
        return self.first_delta_at is not None or self.terminal_reason is not None

    def headers(self, instance: bytes = b"") -> list[tuple[str, bytes]]:
        """The record's Kafka headers; `instance` is the `sidecar_instance` of this run."""
        seq = self.stream_seq
        uid = self.writer_uid
        hs = [
            _KIND_HEADERS[self.kind],
            ("message_id", self.message_id.encode()),
            ("seq", _SEQS[seq] if seq < _SMALL else str(seq).encode()),
            ("writer_uid", _UIDS.get(uid) or _uid_header(uid)),
            ("sidecar_instance", instance),
        ]
        if self.terminal_reason is not None:
            hs.append(_REASON_HEADERS[self.terminal_reason])
        return hs


_KIND_HEADERS = {k: ("type", k.encode()) for k in ("start", "delta", "full", "done")}
# Header values made once instead of per record: small seqs, and the uids seen (a pod
# has a handful; the cache stops growing at 1,024).
_SMALL = 1024
_SEQS = [str(n).encode() for n in range(_SMALL)]
_UIDS: dict[int, bytes] = {}


def _uid_header(uid: int) -> bytes:
    value = str(uid).encode()
    if len(_UIDS) < 1024:
        _UIDS[uid] = value
    return value


_REASON_HEADERS = {
    r: ("terminal_reason", r.encode())
    for r in ("client", "disconnect", "idle_timeout", "shutdown", "delivery_failed")
}


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    """The slice of an event loop the coalescer needs; asyncio's loop satisfies it."""

    def time(self) -> float: ...

    def call_at(self, when: float, callback: Callable[[], object]) -> TimerHandle: ...


Emit = Callable[[Record], None]
