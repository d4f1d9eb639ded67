"""Decoding and validating one line into a frame (PROTOCOL §2), sans-IO.

The object is kept exactly as received (`Update.body`, `Update.raw`), so fields the
sidecar does not know pass through to Kafka untouched. `start` and `full` must carry a
`content` object (agentex's TaskMessageContent is one).
"""

from __future__ import annotations

from typing import Any

import orjson

from sidecar.model import Hello, Update


class FrameError(Exception):
    """A rejected line: `code` is the reply's error code (PROTOCOL §3)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def _invalid(message: str) -> FrameError:
    return FrameError("invalid_frame", message)


# delta type -> (text field, channel fields with the type each must have)
DELTA_TYPES: dict[str, tuple[str, tuple[tuple[str, type], ...]]] = {
    "text": ("text_delta", ()),
    "data": ("data_delta", ()),
    "tool_request": ("arguments_delta", (("tool_call_id", str), ("name", str))),
    "tool_response": ("content_delta", (("tool_call_id", str), ("name", str))),
    "reasoning_summary": ("summary_delta", (("summary_index", int),)),
    "reasoning_content": ("content_delta", (("content_index", int),)),
}
_DELTA_NAMES = ", ".join(DELTA_TYPES)
UPDATE_TYPES = ("start", "delta", "full", "done")
ACK_MODES = ("none", "terminal", "all")


def _is_int(v: object) -> bool:
    return type(v) is int  # bool is an int subclass, and never a valid index


def decode_frame(line: bytes) -> Update | Hello:
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        # orjson rejects invalid UTF-8 with the same error.
        raise FrameError("invalid_json", f"not valid UTF-8 JSON: {exc}") from None
    if type(obj) is not dict:
        raise FrameError("invalid_json", f"expected a JSON object, got {type(obj).__name__}")
    kind = obj.get("type")
    if kind == "delta" or kind in UPDATE_TYPES:
        return _update(kind, obj, line)
    if kind == "hello":
        return _hello(obj)
    if not isinstance(kind, str):
        raise _invalid("missing string field 'type'")
    raise _invalid(f"type {kind!r} is not one of hello, start, delta, full, done")


def _hello(obj: dict[str, Any]) -> Hello:
    client = obj.get("client")
    if client is not None and not isinstance(client, str):
        raise _invalid("hello.client must be a string")
    acks = obj.get("acks", "none")
    if acks is None:
        acks = "none"
    if acks not in ACK_MODES:
        raise _invalid(f"hello.acks {acks!r} is not one of none, terminal, all")
    return Hello(client=client, acks=acks)


def _update(kind: Any, obj: dict[str, Any], raw: bytes) -> Update:
    ptm = obj.get("parent_task_message")
    if type(ptm) is not dict:
        raise _invalid(f"{kind}.parent_task_message must be an object")
    task_id = ptm.get("task_id")
    if type(task_id) is not str or not task_id:
        raise _invalid("parent_task_message.task_id must be a non-empty string")
    message_id = ptm.get("id")
    if type(message_id) is not str or not message_id:
        raise _invalid("parent_task_message.id must be a non-empty string")
    index = obj.get("index")
    if index is not None and not _is_int(index):
        raise _invalid(f"{kind}.index must be an integer or null")
    if kind == "delta":
        return _delta(obj, raw, task_id, message_id, index)
    if kind != "done" and type(obj.get("content")) is not dict:
        raise _invalid(f"{kind}.content must be an object")
    return Update(kind, task_id, message_id, obj, raw)


def _delta(obj: dict[str, Any], raw: bytes, task_id: str, message_id: str, index: Any) -> Update:
    delta = obj.get("delta")
    if type(delta) is not dict:
        raise _invalid("delta.delta must be an object")
    dtype = delta.get("type")
    spec = DELTA_TYPES.get(dtype) if isinstance(dtype, str) else None
    if spec is None:
        raise _invalid(f"delta.delta.type {dtype!r} is not one of {_DELTA_NAMES}")
    text_field, channel_fields = spec
    channel: list[Any] = [dtype]
    for name, want in channel_fields:
        value = delta.get(name)
        ok = _is_int(value) if want is int else type(value) is str
        if not ok:
            what = "an integer" if want is int else "a string"
            raise _invalid(f"delta.delta.{name} must be {what} for a {dtype} delta")
        channel.append(value)
    channel.append(index)
    text = delta.get(text_field)
    if text is None:
        text = ""
    elif type(text) is not str:
        raise _invalid(f"delta.delta.{text_field} must be a string or null")
    return Update("delta", task_id, message_id, obj, raw, tuple(channel), text_field, text)
