"""Streams reassembled from consumed records, with the order the product promises checked
(PROTOCOL §5). Sans-IO: `tail --reassemble`, `SidecarStreamRepository.subscribe`'s
readers, the benchmark and tests feed it records.

    for message in reassemble(records):       # strict: the first violation raises
        message.content                       # agentex TaskMessageContent, as JSON

Per stream `(task_id, message_id)` the stream's content is built exactly as agentex's
`DeltaAccumulator` builds it in the agent (`sidecar_client.content`), the delta texts
are also kept per channel, and the stream is handed back when its terminal arrives.

`seq` counts a stream's records per sidecar instance (the `sidecar_instance` header):
a stream seen again under a new instance was resumed after a sidecar restart, so its
`seq` starts again at 0 there; the stream is marked `resumed` (frames the agent wrote
to the old instance and that it never produced are not in the topic: the agent's client
was told so). A stream the old instance ended with a `shutdown` terminal and that goes
on under a new instance is handed back twice: its part up to the shutdown, then the
resumed part (`resumed`) up to its own terminal. Violations found on the way, each a
typed error in strict mode:

- `seq_gap` (`SeqGap`): a `seq` past the one due (lost records), or a first record
  other than 0 when reading from the start;
- `seq_duplicate` (`SeqDuplicate`): a `seq` already seen (a duplicated or reordered
  record);
- `record_after_terminal`, `duplicate_terminal` (`SeqDuplicate`): anything of a stream
  after its terminal;
- `start_not_first`: a `start` after other records of its stream;
- `task_split`: records of one task on two partitions;
- `header_mismatch`, `bad_record`: headers disagreeing with the value, or a value
  that is not a stream update at all;

Deltas agentex could not accumulate either (two kinds in one stream, arguments that
are not JSON, an unknown delta type) leave the stream's `content` None and say why in
`content_error`: the sidecar itself allows them (PROTOCOL §2.1), so they are no
violation of its order; in strict mode they raise `ContentConflict`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from sidecar_client.content import ContentAccumulator, ContentError
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


class ReassemblyError(ValueError):
    """A violation, raised in strict mode; `violation` says where."""

    def __init__(self, violation: Violation) -> None:
        super().__init__(str(violation))
        self.violation = violation


class SeqGap(ReassemblyError):
    """Records of a stream are missing."""


class SeqDuplicate(ReassemblyError):
    """A record of a stream came twice, out of order, or after the stream's terminal."""


class ContentConflict(ReassemblyError, ContentError):
    """The deltas do not make one TaskMessageContent."""


_ERRORS: dict[str, type[ReassemblyError]] = {
    "seq_gap": SeqGap,
    "seq_duplicate": SeqDuplicate,
    "record_after_terminal": SeqDuplicate,
    "duplicate_terminal": SeqDuplicate,
}


@dataclass(slots=True)
class Stream:
    task_id: str
    message_id: str
    partition: int | None = None
    records: int = 0
    deltas: int = 0
    next_seq: int = 0  # the `seq` header the next record should carry
    instance: str | None = None  # the `sidecar_instance` of the stream's latest record
    resumed: int = 0  # times the stream went on under a new sidecar instance
    partial: bool = False  # joined mid-way (not reading from the start): head unseen
    channels: dict[str, str] = field(default_factory=dict)  # channel label -> text
    terminal: str | None = None  # "full" or "done" once ended
    terminal_reason: str | None = None
    content: Any = None  # the message's TaskMessageContent (JSON) once ended
    content_error: str | None = None  # why there is no content (see the module doc)
    initial_content: Any = None  # the message's content when it opened
    parent: Any = None  # the latest parent_task_message
    accumulator: ContentAccumulator = field(default_factory=ContentAccumulator, repr=False)

    @property
    def key(self) -> StreamKey:
        return (self.task_id, self.message_id)

    def final_content(self, terminal: Mapping[str, Any]) -> Any:
        """What agentex stores as the message's content when this terminal ends it: a
        `full`'s content; else the accumulated deltas; else the content it opened with."""
        if terminal.get("type") == "full":
            return terminal.get("content")
        if self.accumulator.has_deltas:
            return self.accumulator.content()
        if self.initial_content is not None:
            return self.initial_content
        ptm = terminal.get("parent_task_message")
        return ptm.get("content") if isinstance(ptm, Mapping) else None

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
        if self.terminal is not None:
            out["content"] = self.content
        if self.content_error is not None:
            out["content_error"] = self.content_error
        if self.partial:
            out["partial"] = True
        if self.resumed:
            out["resumed"] = self.resumed
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
    checks order only. `strict=True` raises the first violation as its typed error
    (`SeqGap`, `SeqDuplicate`, `ContentConflict`, else `ReassemblyError`) instead of
    collecting it."""

    def __init__(
        self,
        *,
        from_start: bool = True,
        keep_text: bool = True,
        strict: bool = False,
        on_violation: Callable[[Violation], None] | None = None,
    ) -> None:
        self.from_start = from_start
        self.keep_text = keep_text
        self.strict = strict
        self.on_violation = on_violation
        self.open: dict[StreamKey, Stream] = {}
        self.finished = 0
        self.violations: list[Violation] = []
        # Ended streams -> (sidecar_instance, terminal_reason) of their terminal: kept to
        # catch records after a terminal, and to tell a stream resumed after a restart.
        self._ended: dict[StreamKey, tuple[str | None, str | None]] = {}
        self._partition_of: dict[str, int] = {}

    def feed(
        self,
        value: Mapping[str, Any] | bytes | None,
        headers: Headers | None,
        *,
        key: bytes | str | None = None,
        partition: int | None = None,
        offset: int | None = None,
    ) -> Stream | None:
        """One record (its value decoded or not); returns the stream its terminal ends.

        `headers` None: a bare event (what `SidecarStreamRepository.subscribe` yields),
        whose `seq` cannot be checked; everything else is."""
        where = (partition, offset)
        if isinstance(value, bytes):
            try:
                value = orjson.loads(value)
            except orjson.JSONDecodeError:
                value = None
        task_id = _text(key)
        message_id = None if headers is None else _text(headers.get("message_id"))
        ptm = value.get("parent_task_message") if isinstance(value, Mapping) else None
        if not isinstance(value, Mapping) or not isinstance(ptm, Mapping):
            self._report("bad_record", task_id, message_id, "value is not a stream update", where)
            return None
        stream_key = (str(ptm.get("task_id")), str(ptm.get("id")))
        if headers is None:
            kind = str(value.get("type"))
        else:
            kind = _text(headers.get("type")) or str(value.get("type"))
            self._check_headers(stream_key, kind, value, headers, task_id, message_id, where)
        resumed = 0
        if stream_key in self._ended:
            if not self._resumes(stream_key, headers):
                what = "duplicate_terminal" if kind in TERMINAL_KINDS else "record_after_terminal"
                self._report(what, *stream_key, f"{kind} after the stream's terminal", where)
                return None
            # Its part under the old instance ended at that sidecar's shutdown; the agent
            # went on under the new one (PROTOCOL §5): a new part, counted from seq 0.
            del self._ended[stream_key]
            resumed = 1
        stream = self.open.get(stream_key)
        if stream is None:
            stream = self.open[stream_key] = Stream(*stream_key, partition=partition)
            stream.resumed = resumed
        self._check_order(stream, kind, headers, where)
        stream.records += 1
        stream.parent = ptm
        if kind == "start":
            stream.initial_content = ptm.get("content", value.get("content"))
        elif kind == "delta":
            stream.deltas += 1
            delta = value.get("delta")
            if self.keep_text and isinstance(delta, Mapping):
                self._append(stream, delta, value.get("index"))
            if self.keep_text and (delta is None or isinstance(delta, Mapping)):
                self._accumulate(stream, delta, where)
        elif kind in TERMINAL_KINDS:
            stream.terminal = kind
            if headers is not None:
                stream.terminal_reason = _text(headers.get("terminal_reason"))
            if kind == "full" or (self.keep_text and stream.content_error is None):
                try:
                    stream.content = stream.final_content(value)
                except ContentError as exc:
                    self._content_error(stream, exc, where)
            del self.open[stream_key]
            self._ended[stream_key] = (stream.instance, stream.terminal_reason)
            self.finished += 1
            return stream
        return None

    def _resumes(self, key: StreamKey, headers: Headers | None) -> bool:
        """A record of an ended stream that begins its next part: the stream ended with a
        `shutdown` terminal and this record comes from another sidecar instance."""
        if headers is None:
            return False
        instance, reason = self._ended[key]
        return reason == "shutdown" and _text(headers.get("sidecar_instance")) != instance

    def _append(self, stream: Stream, delta: Mapping[str, Any], index: Any) -> None:
        spec = DELTA_TYPES.get(str(delta.get("type")))
        if spec is None:
            return  # not a delta type the sidecar accepts; nothing to concatenate
        label = channel_label(delta, index)
        piece = delta.get(spec[0])
        stream.channels[label] = stream.channels.get(label, "") + (
            piece if isinstance(piece, str) else ""  # null counts as ""
        )

    def _accumulate(
        self, stream: Stream, delta: Mapping[str, Any] | None, where: tuple[int | None, int | None]
    ) -> None:
        if stream.content_error is not None:
            return
        try:
            stream.accumulator.add(delta)
        except ContentError as exc:
            self._content_error(stream, exc, where)

    def _content_error(
        self, stream: Stream, exc: ContentError, where: tuple[int | None, int | None]
    ) -> None:
        if self.strict:
            raise ContentConflict(Violation("content", *stream.key, str(exc), *where))
        stream.content_error = str(exc)

    def _check_order(
        self,
        stream: Stream,
        kind: str,
        headers: Headers | None,
        where: tuple[int | None, int | None],
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
        if headers is None:
            return
        raw = _text(headers.get("seq"))
        try:
            seq = int(raw) if raw is not None else None
        except ValueError:
            seq = None
        instance = _text(headers.get("sidecar_instance"))
        if stream.records > 0 and instance != stream.instance:
            # Resumed by a restarted sidecar: its seq counts from 0 again (PROTOCOL §5).
            stream.resumed += 1
            stream.next_seq = 0
        stream.instance = instance
        if seq is None:
            self._report("header_mismatch", task_id, message_id, f"seq header {raw!r}", where)
        elif stream.records == 0 and not self.from_start and seq > 0:
            stream.partial = True  # its head came before we started reading
        elif seq != stream.next_seq:
            detail = f"seq {seq} where {stream.next_seq} was due"
            if stream.records == 0:
                detail += " (its first records are missing, or were deleted by retention)"
            what = "seq_duplicate" if seq < stream.next_seq else "seq_gap"
            self._report(what, task_id, message_id, detail, where)
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
        if self.strict:
            raise _ERRORS.get(kind, ReassemblyError)(v)
        self.violations.append(v)
        if self.on_violation is not None:
            self.on_violation(v)


class RecordLike(Protocol):
    """A consumed Kafka record (aiokafka's ConsumerRecord, the sidecar's ConsumedRecord,
    `sidecar_client.kafka.StreamRecord` all fit)."""

    @property
    def key(self) -> bytes | None: ...

    @property
    def value(self) -> bytes | None: ...

    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...


def _headers(record: Any) -> Headers:
    headers = record.headers
    return dict(headers) if not isinstance(headers, Mapping) else headers


def reassemble(
    records: Iterable[RecordLike | Mapping[str, Any]], *, from_start: bool = True
) -> Iterator[Stream]:
    """Each stream of `records` (in partition order) as its terminal arrives, with its
    `content` as agentex's DeltaAccumulator would build it. Strict: the first gap,
    duplicate or content conflict raises its typed error (`ReassemblyError`).

    A record is a consumed Kafka record (its headers are checked), or a bare event dict
    (as `SidecarStreamRepository.subscribe` yields; order only)."""
    asm = Reassembler(from_start=from_start, strict=True)
    for rec in records:
        if isinstance(rec, Mapping):
            done = asm.feed(rec, None)
        else:
            done = asm.feed(
                rec.value, _headers(rec), key=rec.key, partition=rec.partition, offset=rec.offset
            )
        if done is not None:
            yield done
