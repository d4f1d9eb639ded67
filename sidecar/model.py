"""Plain data shared along the data path: decoded frames in, records out.

No asyncio and no Kafka here, so the protocol, the coalescer, the sinks and the tests
all speak the same types.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
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


@dataclass(slots=True)
class Record:
    """One Kafka record, ready to produce (key = task_id)."""

    task_id: str
    message_id: str
    kind: UpdateKind
    value: bytes
    stream_seq: int  # 0-based position among the stream's records (the `seq` header)
    terminal_reason: TerminalReason | None = None
    acks: list[AckToken] = field(default_factory=list)
    deltas: int = 0  # how many delta lines this record carries (metrics)
    # Loop time the stream's first delta was read, set only on the record carrying it
    # (the first-delta latency metric).
    first_delta_at: float | None = None
    writer_uid: int = 0  # the peer uid of the connection that wrote it (`writer_uid`)
    # Who to tell if it finally fails, whatever its acks (PROTOCOL §5): the connection
    # that owned the stream, and its line number of the stream's latest frame.
    writer: ReplyTarget | None = None
    line_seq: int = 0

    def headers(self, instance: bytes = b"") -> list[tuple[str, bytes]]:
        """The record's Kafka headers; `instance` is the `sidecar_instance` of this run."""
        hs = [
            ("type", self.kind.encode()),
            ("message_id", self.message_id.encode()),
            ("seq", str(self.stream_seq).encode()),
            ("writer_uid", str(self.writer_uid).encode()),
            ("sidecar_instance", instance),
        ]
        if self.terminal_reason is not None:
            hs.append(("terminal_reason", self.terminal_reason.encode()))
        return hs

    @property
    def size(self) -> int:
        """Bytes this record holds in memory, for --max-pending-bytes accounting."""
        return len(self.value) + len(self.task_id) + len(self.message_id) + 64


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    """The slice of an event loop the coalescer needs; asyncio's loop satisfies it."""

    def time(self) -> float: ...

    def call_at(self, when: float, callback: Callable[[], object]) -> TimerHandle: ...


Emit = Callable[[Record], None]
