"""Streams reassembled from consumed records, with the order the product promises checked
(PROTOCOL §5). Sans-IO: `tail --reassemble`, the benchmark and tests feed it records.

Per stream `(task_id, message_id)` the delta texts are concatenated per channel, and the
stream is handed back when its terminal arrives. Violations found on the way:

- `record_after_terminal`, `duplicate_terminal`: anything of a stream after its terminal;
- `seq_gap`: a `seq` header that is not the previous one plus one (lost, duplicated or
  reordered records), or a first record other than 0 when reading from the start;
- `start_not_first`: a `start` after other records of its stream;
- `task_split`: records of one task on two partitions;
- `header_mismatch`, `bad_record`: headers disagreeing with the value, or a value
  that is not a stream update at all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from sidecar_client.protocol import DELTA_TYPES
from sidecar_client.protocol.model import TERMINAL_KINDS, StreamKey

Headers = Mapping[str, bytes | str]


@dataclass(frozen=True, slots=True)
class Violation:
    kind: str
    task_id: str
    message_id: str
    detail: str
    partition: int | None = None
    offset: int | None = None

    def __str__(self) -> str:
        where = "" if self.offset is None else f" at {self.partition}@{self.offset}"
        return f"{self.kind}: {self.task_id}/{self.message_id}{where}: {self.detail}"


@dataclass(slots=True)
class Stream:
    task_id: str
    message_id: str
    partition: int | None = None
    records: int = 0
    deltas: int = 0
    next_seq: int = 0  # the `seq` header the next record should carry
    partial: bool = False  # joined mid-way (not reading from the start): head unseen
    channels: dict[str, str] = field(default_factory=dict)  # channel label -> text
    terminal: str | None = None  # "full" or "done" once ended
    terminal_reason: str | None = None
    content: Any = None  # a `full` terminal's content

    @property
    def key(self) -> StreamKey:
        return (self.task_id, self.message_id)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "task_id": self.task_id,
            "message_id": self.message_id,
            "terminal": self.terminal,
            "terminal_reason": self.terminal_reason,
            "partition": self.partition,
            "records": self.records,
            "deltas": self.deltas,
            "channels": self.channels,
        }
        if self.terminal == "full":
            out["content"] = self.content
        if self.partial:
            out["partial"] = True
        return out


def channel_label(delta: Mapping[str, Any], index: Any = None) -> str:
    """`text`, `tool_request:<call id>:<name>`, `reasoning_summary:<n>`..., plus `#<index>`
    when the update has one: the same fields that keep channels apart when coalescing."""
    dtype = str(delta.get("type"))
    spec = DELTA_TYPES.get(dtype)
    parts = [dtype, *(str(delta.get(name)) for name, _ in spec[1])] if spec else [dtype]
    label = ":".join(parts)
    return label if index is None else f"{label}#{index}"


def _text(value: bytes | str | None) -> str | None:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


class Reassembler:
    """Feed it records in partition order; it returns each stream when its terminal
    arrives. `from_start=False` (reading from the log's end) takes a stream whose first
    record seen is not seq 0 as joined mid-way rather than as a gap; `keep_text=False`
    checks order only."""

    def __init__(
        self,
        *,
        from_start: bool = True,
        keep_text: bool = True,
        on_violation: Callable[[Violation], None] | None = None,
    ) -> None:
        self.from_start = from_start
        self.keep_text = keep_text
        self.on_violation = on_violation
        self.open: dict[StreamKey, Stream] = {}
        self.finished = 0
        self.violations: list[Violation] = []
        self._ended: set[StreamKey] = set()  # kept to catch records after a terminal
        self._partition_of: dict[str, int] = {}

    def feed(
        self,
        value: Mapping[str, Any] | bytes | None,
        headers: Headers,
        *,
        key: bytes | str | None = None,
        partition: int | None = None,
        offset: int | None = None,
    ) -> Stream | None:
        """One record (its value decoded or not); returns the stream its terminal ends."""
        where = (partition, offset)
        if isinstance(value, bytes):
            try:
                value = orjson.loads(value)
            except orjson.JSONDecodeError:
                value = None
        task_id, message_id = _text(key), _text(headers.get("message_id"))
        ptm = value.get("parent_task_message") if isinstance(value, Mapping) else None
        if not isinstance(value, Mapping) or not isinstance(ptm, Mapping):
            self._report("bad_record", task_id, message_id, "value is not a stream update", where)
            return None
        stream_key = (str(ptm.get("task_id")), str(ptm.get("id")))
        kind = _text(headers.get("type")) or str(value.get("type"))
        self._check_headers(stream_key, kind, value, headers, task_id, message_id, where)
        if stream_key in self._ended:
            what = "duplicate_terminal" if kind in TERMINAL_KINDS else "record_after_terminal"
            self._report(what, *stream_key, f"{kind} after the stream's terminal", where)
            return None
        stream = self.open.get(stream_key)
        if stream is None:
            stream = self.open[stream_key] = Stream(*stream_key, partition=partition)
        self._check_order(stream, kind, headers, where)
        stream.records += 1
        if kind == "delta":
            stream.deltas += 1
            delta = value.get("delta")
            if self.keep_text and isinstance(delta, Mapping):
                self._append(stream, delta, value.get("index"))
        elif kind in TERMINAL_KINDS:
            stream.terminal = kind
            stream.terminal_reason = _text(headers.get("terminal_reason"))
            if kind == "full":
                stream.content = value.get("content")
            del self.open[stream_key]
            self._ended.add(stream_key)
            self.finished += 1
            return stream
        return None

    def _append(self, stream: Stream, delta: Mapping[str, Any], index: Any) -> None:
        spec = DELTA_TYPES.get(str(delta.get("type")))
        if spec is None:
            return  # not a delta type the sidecar accepts; nothing to concatenate
        label = channel_label(delta, index)
        piece = delta.get(spec[0])
        stream.channels[label] = stream.channels.get(label, "") + (
            piece if isinstance(piece, str) else ""  # null counts as ""
        )

    def _check_order(
        self, stream: Stream, kind: str, headers: Headers, where: tuple[int | None, int | None]
    ) -> None:
        task_id, message_id = stream.key
        if where[0] is not None:
            first = self._partition_of.setdefault(task_id, where[0])
            if first != where[0]:
                self._report(
                    "task_split", *stream.key, f"partition {where[0]}, earlier {first}", where
                )
        if kind == "start" and stream.records > 0:
            self._report("start_not_first", *stream.key, f"start after {stream.records}", where)
        raw = _text(headers.get("seq"))
        try:
            seq = int(raw) if raw is not None else None
        except ValueError:
            seq = None
        if seq is None:
            self._report("header_mismatch", task_id, message_id, f"seq header {raw!r}", where)
        elif stream.records == 0 and not self.from_start and seq > 0:
            stream.partial = True  # its head came before we started reading
        elif seq != stream.next_seq:
            detail = f"seq {seq} where {stream.next_seq} was due"
            if stream.records == 0:
                detail += " (its first records are missing, or were deleted by retention)"
            self._report("seq_gap", task_id, message_id, detail, where)
        if seq is not None:
            stream.next_seq = seq + 1  # resynchronise: one gap is one violation

    def _check_headers(
        self,
        stream_key: StreamKey,
        kind: str,
        value: Mapping[str, Any],
        headers: Headers,
        task_id: str | None,
        message_id: str | None,
        where: tuple[int | None, int | None],
    ) -> None:
        problems = []
        if value.get("type") != kind:
            problems.append(f"type header {kind!r}, value type {value.get('type')!r}")
        if message_id is not None and message_id != stream_key[1]:
            problems.append(f"message_id header {message_id!r}")
        if task_id is not None and task_id != stream_key[0]:
            problems.append(f"key {task_id!r}")
        if kind in TERMINAL_KINDS and headers.get("terminal_reason") is None:
            problems.append("terminal without a terminal_reason header")
        if problems:
            self._report("header_mismatch", *stream_key, "; ".join(problems), where)

    def _report(
        self,
        kind: str,
        task_id: str | None,
        message_id: str | None,
        detail: str,
        where: tuple[int | None, int | None],
    ) -> None:
        v = Violation(kind, task_id or "?", message_id or "?", detail, *where)
        self.violations.append(v)
        if self.on_violation is not None:
            self.on_violation(v)
