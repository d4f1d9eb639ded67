"""Update builders and a table harness for the transform tests.

`update()` builds `model.Update` objects directly (channel, text field, text), so these
tests do not depend on `sidecar_client.protocol`; the channel table below is PROTOCOL §2.1's.
"""

from __future__ import annotations

from typing import Any

import orjson

from sidecar.model import AckToken, Record, Update
from sidecar.transform.table import StreamTable
from tests.transform.clock import FakeClock

# delta type -> (text field, channel fields)
DELTA_SPECS: dict[str, tuple[str, tuple[str, ...]]] = {
    "text": ("text_delta", ()),
    "data": ("data_delta", ()),
    "tool_request": ("arguments_delta", ("tool_call_id", "name")),
    "tool_response": ("content_delta", ("tool_call_id", "name")),
    "reasoning_summary": ("summary_delta", ("summary_index",)),
    "reasoning_content": ("content_delta", ("content_index",)),
}


def parent(task: str, msg: str, content: str = "") -> dict[str, Any]:
    body = {"type": "text", "author": "agent", "content": content}
    return {"id": msg, "task_id": task, "content": body}


def start(task: str, msg: str, **extra: Any) -> dict[str, Any]:
    content = {"type": "text", "author": "agent", "content": ""}
    return {"type": "start", "parent_task_message": parent(task, msg), "content": content, **extra}


def delta(
    task: str,
    msg: str,
    text: str | None,
    *,
    dtype: str = "text",
    fields: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A delta update; `fields` go into the delta object (channel fields, unknown ones),
    `extra` onto the update (`index`, unknown ones)."""
    text_field = DELTA_SPECS[dtype][0]
    inner = {"type": dtype, text_field: text, **(fields or {})}
    return {"type": "delta", "parent_task_message": parent(task, msg), "delta": inner, **extra}


def done(task: str, msg: str, **extra: Any) -> dict[str, Any]:
    return {"type": "done", "parent_task_message": parent(task, msg), **extra}


def full(task: str, msg: str, text: str, **extra: Any) -> dict[str, Any]:
    content = {"type": "text", "author": "agent", "content": text}
    return {"type": "full", "parent_task_message": parent(task, msg), "content": content, **extra}


def channel_of(obj: dict[str, Any]) -> tuple[Any, ...]:
    """What must match for two deltas to merge: delta type, channel fields, `index`."""
    inner = obj["delta"]
    names = DELTA_SPECS[inner["type"]][1]
    return (inner["type"], *(inner.get(n) for n in names), obj.get("index"))


def text_of(obj: dict[str, Any]) -> str:
    inner = obj["delta"]
    return inner.get(DELTA_SPECS[inner["type"]][0]) or ""


def update(obj: dict[str, Any], raw: bytes | None = None) -> Update:
    ptm = obj["parent_task_message"]
    raw = orjson.dumps(obj) if raw is None else raw
    inner = obj.get("delta")
    if obj["type"] != "delta" or not isinstance(inner, dict) or inner["type"] not in DELTA_SPECS:
        # Not a delta, or one without a channel (unknown type, null: PROTOCOL §2.1).
        return Update(obj["type"], ptm["task_id"], ptm["id"], obj, raw)
    text_field = DELTA_SPECS[obj["delta"]["type"]][0]
    return Update(
        "delta", ptm["task_id"], ptm["id"], obj, raw, channel_of(obj), text_field, text_of(obj)
    )


class Owner:
    """Stands in for a connection: the owner of streams, and the acks' reply target."""

    def send_ack(self, seq: int, partition: int, offset: int) -> None: ...

    def send_error(self, seq: int, code: str, message: str) -> None: ...


class Harness:
    """A StreamTable on a FakeClock, recording what it emits (and when)."""

    def __init__(
        self,
        interval: float = 0.05,
        max_chars: int = 128,
        ttl: float = 600,
        idle: float = 300,
        clock: FakeClock | None = None,
    ) -> None:
        self.clock = clock or FakeClock()
        self.records: list[Record] = []
        self.emitted_at: list[float] = []
        self.table = StreamTable(
            clock=self.clock,
            emit=self._emit,
            flush_interval=interval,
            max_buffered_chars=max_chars,
            closed_ttl=ttl,
            idle_timeout=idle,
        )
        self.owner = Owner()

    def _emit(self, record: Record) -> None:
        self.records.append(record)
        self.emitted_at.append(self.clock.time())

    def send(self, obj: dict[str, Any], owner: Owner | None = None, ack: int | None = None) -> None:
        token = AckToken(self.owner, ack) if ack is not None else None
        self.table.handle(update(obj), self.owner if owner is None else owner, token)

    def values(self, msg: str | None = None) -> list[dict[str, Any]]:
        return [orjson.loads(r.value) for r in self.records if msg is None or r.message_id == msg]

    def kinds(self, msg: str | None = None) -> list[str]:
        return [r.kind for r in self.records if msg is None or r.message_id == msg]

    def texts(self, msg: str | None = None) -> list[str]:
        return [text_of(v) for v in self.values(msg) if v["type"] == "delta"]

    def acks(self) -> list[list[int]]:
        return [[a.seq for a in r.acks] for r in self.records]
