"""A stream's deltas into agentex `TaskMessageContent`, exactly as agentex's own
`DeltaAccumulator` (agentex-sdk 0.28, `agentex.lib.core.services.adk.streaming`) builds
it in the agent, as plain JSON: what `content.model_dump(mode="json")` gives there.

No agentex import: consumers (an SSE gateway, an indexer) need not install the SDK.
agentex's rules, mirrored one for one:

- A stream's deltas are all of one kind: `text`, `data`, `tool_request`,
  `tool_response`, or reasoning (`reasoning_summary` and `reasoning_content` together);
  another kind is an error (agentex raises "Delta type mismatch"), and so is a delta
  type agentex does not know (it cannot even parse one). A null delta is skipped.
- `text`, `tool_response`: the texts concatenated (null counts as ""); `data` and
  `tool_request`: the concatenation parsed as JSON; a tool's `tool_call_id` and `name`
  are the first delta's.
- reasoning: per `summary_index` / `content_index`, concatenated; the lists in index
  order without empty entries; `content` null when there is none; no text at all gives
  an empty text content.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

_KINDS = {
    "text": "text",
    "data": "data",
    "tool_request": "tool_request",
    "tool_response": "tool_response",
    "reasoning_summary": "reasoning",
    "reasoning_content": "reasoning",
}


class ContentError(ValueError):
    """The deltas do not make one TaskMessageContent (agentex would raise too)."""


def text_content(text: str) -> dict[str, Any]:
    return {
        "author": "agent",
        "content": text,
        "attachments": None,
        "format": "plain",
        "style": "static",
        "type": "text",
    }


class ContentAccumulator:
    """Feed a stream's deltas in order (`add`); `content()` builds the content."""

    __slots__ = ("_first", "_kind", "_parts", "_reasoning")

    def __init__(self) -> None:
        self._kind: str | None = None
        self._first: Mapping[str, Any] | None = None  # the first delta (tool ids)
        self._parts: list[str] = []
        # reasoning: (delta type, index) -> text
        self._reasoning: dict[tuple[str, int], str] = {}

    @property
    def has_deltas(self) -> bool:
        """Whether any (non-null) delta came: agentex keeps the initial content if not."""
        return self._first is not None

    def add(self, delta: Mapping[str, Any] | None) -> None:
        if delta is None:
            return
        dtype = delta.get("type")
        kind = _KINDS.get(dtype) if isinstance(dtype, str) else None
        if kind is None:
            raise ContentError(f"Unknown delta type: {dtype!r}")
        if self._kind is None:
            self._kind = kind
        elif kind != self._kind:
            raise ContentError(f"Delta type mismatch: {self._kind} != {dtype}")
        if self._first is None:
            self._first = delta
        if dtype == "reasoning_summary":
            self._add_reasoning(dtype, delta.get("summary_index"), delta.get("summary_delta"))
        elif dtype == "reasoning_content":
            self._add_reasoning(dtype, delta.get("content_index"), delta.get("content_delta"))
        else:
            field = _TEXT_FIELDS[kind]
            self._parts.append(_text(delta.get(field), f"{dtype}.{field}"))

    def _add_reasoning(self, dtype: str, index: Any, text: Any) -> None:
        if type(index) is not int:
            raise ContentError(f"{dtype} delta without an integer index: {index!r}")
        key = (dtype, index)
        self._reasoning[key] = self._reasoning.get(key, "") + _text(text, dtype)

    def content(self) -> dict[str, Any]:
        """The TaskMessageContent as JSON; ContentError if there is no delta."""
        kind, first = self._kind, self._first
        if kind is None or first is None:
            raise ContentError("no delta to build content from")
        joined = "".join(self._parts)
        if kind == "text":
            return text_content(joined)
        if kind == "data":
            return {
                "author": "agent",
                "data": _json(joined, "data"),
                "style": "static",
                "type": "data",
            }
        if kind == "tool_request":
            return {
                "arguments": _json(joined, "tool request arguments"),
                "author": "agent",
                "name": first.get("name"),
                "tool_call_id": first.get("tool_call_id"),
                "style": "static",
                "type": "tool_request",
            }
        if kind == "tool_response":
            return {
                "author": "agent",
                "content": joined,
                "name": first.get("name"),
                "tool_call_id": first.get("tool_call_id"),
                "is_error": None,
                "style": "static",
                "type": "tool_response",
            }
        summary = self._reasoning_list("reasoning_summary")
        content = self._reasoning_list("reasoning_content")
        if not summary and not content:
            return text_content("")
        return {
            "author": "agent",
            "summary": summary,
            "content": content or None,
            "style": "static",
            "type": "reasoning",
        }

    def _reasoning_list(self, dtype: str) -> list[str]:
        got = sorted((i, t) for (d, i), t in self._reasoning.items() if d == dtype)
        return [t for _, t in got if t]


_TEXT_FIELDS = {
    "text": "text_delta",
    "data": "data_delta",
    "tool_request": "arguments_delta",
    "tool_response": "content_delta",
}


def _text(value: Any, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ContentError(f"{what} is not a string: {value!r}"[:200])
    return value


def _json(text: str, what: str) -> Any:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ContentError(f"Accumulated {what} is not valid JSON: {text[:200]!r}") from exc
    if not isinstance(value, dict):
        raise ContentError(f"Accumulated {what} is not a JSON object: {text[:200]!r}")
    return value
