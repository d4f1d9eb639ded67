"""Builders for agentex TaskMessageUpdate JSON (as `model_dump(mode="json")` writes it),
local to the protocol tests so they depend on nothing but `sidecar_client.protocol`."""

from __future__ import annotations

from typing import Any

import orjson


def parent(task: str, msg: str) -> dict[str, Any]:
    return {
        "id": msg,
        "task_id": task,
        "content": {"type": "text", "author": "agent", "content": ""},
    }


def update(kind: str, task: str = "t", msg: str = "m", **fields: Any) -> dict[str, Any]:
    return {"type": kind, "parent_task_message": parent(task, msg), **fields}


def start(task: str = "t", msg: str = "m", **fields: Any) -> dict[str, Any]:
    fields.setdefault("content", {"type": "text", "author": "agent", "content": ""})
    return update("start", task, msg, **fields)


def full(task: str = "t", msg: str = "m", text: str = "all", **fields: Any) -> dict[str, Any]:
    fields.setdefault("content", {"type": "text", "author": "agent", "content": text})
    return update("full", task, msg, **fields)


def done(task: str = "t", msg: str = "m", **fields: Any) -> dict[str, Any]:
    return update("done", task, msg, **fields)


def delta(body: dict[str, Any], task: str = "t", msg: str = "m", **fields: Any) -> dict[str, Any]:
    return update("delta", task, msg, delta=body, **fields)


def text_delta(text: str | None, task: str = "t", msg: str = "m", **fields: Any) -> dict[str, Any]:
    return delta({"type": "text", "text_delta": text}, task, msg, **fields)


def raw(obj: Any) -> bytes:
    return orjson.dumps(obj)
