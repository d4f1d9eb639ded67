"""Reassembling streams from consumed records, and checking the order the product
promises (PROTOCOL §5). Plain code: `tail --reassemble`, the benchmark and tests share it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sidecar.protocol import DELTA_TYPES


@dataclass
class Assembled:
    task_id: str
    message_id: str
    terminal: str = ""
    reason: str = ""
    records: int = 0
    deltas: int = 0
    channels: dict[str, str] = field(default_factory=dict)  # channel label -> text
    content: Any = None  # a `full` terminal's content


class Reassembler:
    def __init__(self) -> None:
        self.open: dict[tuple[str, str], Assembled] = {}
        self.finished: set[tuple[str, str]] = set()
        self.violations: list[str] = []

    def feed(self, value: dict[str, Any], headers: dict[str, bytes]) -> Assembled | None:
        """One record; returns the stream once its terminal arrives."""
        ptm = value.get("parent_task_message") or {}
        key = (str(ptm.get("task_id")), str(ptm.get("id")))
        kind = headers.get("type", b"").decode() or str(value.get("type"))
        if key in self.finished:
            self.violations.append(f"{key[0]}/{key[1]}: {kind} record after its terminal")
            return None
        stream = self.open.setdefault(key, Assembled(*key))
        seq = headers.get("seq")
        if seq is not None and int(seq) != stream.records:
            self.violations.append(
                f"{key[0]}/{key[1]}: seq {int(seq)} where {stream.records} was due"
            )
        stream.records += 1
        if kind == "start" and stream.records != 1:
            self.violations.append(f"{key[0]}/{key[1]}: start is not the first record")
        if kind == "delta":
            delta = value.get("delta") or {}
            dtype = str(delta.get("type"))
            spec = DELTA_TYPES.get(dtype)
            if spec is not None:
                text_field, channel_fields = spec
                label = ":".join([dtype, *(str(delta.get(n)) for n, _ in channel_fields)])
                stream.channels[label] = stream.channels.get(label, "") + (
                    delta.get(text_field) or ""
                )
            stream.deltas += 1
        elif kind in ("full", "done"):
            stream.terminal = kind
            stream.reason = headers.get("terminal_reason", b"").decode()
            if kind == "full":
                stream.content = value.get("content")
            del self.open[key]
            self.finished.add(key)
            return stream
        return None
