"""agentex TaskMessageUpdate JSON for agents that do not use the agentex SDK: the same
objects `update.model_dump(mode="json")` gives (PROTOCOL §2.1), as plain dicts.

    await sidecar.send(start(task_id, message_id))
    await sidecar.send(text(task_id, message_id, "Hel"))
    ack = await (await sidecar.send(done(task_id, message_id)))
"""

from __future__ import annotations

from typing import Any

from sidecar_client.content import text_content


def parent(task_id: str, message_id: str, content: dict[str, Any] | None = None) -> dict[str, Any]:
    """The `parent_task_message` every update carries."""
    return {
        "id": message_id,
        "task_id": task_id,
        "content": content if content is not None else text_content(""),
    }


def start(
    task_id: str, message_id: str, content: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    """Opens a stream (`content`: its initial TaskMessageContent, empty text by default)."""
    content = content if content is not None else text_content("")
    return {
        "type": "start",
        "parent_task_message": parent(task_id, message_id, content),
        "content": content,
        **extra,
    }


def delta(
    task_id: str, message_id: str, delta: dict[str, Any] | None, **extra: Any
) -> dict[str, Any]:
    """One delta of any type (`{"type": "tool_request", "tool_call_id": ..., ...}`)."""
    return {
        "type": "delta",
        "parent_task_message": parent(task_id, message_id),
        "delta": delta,
        **extra,
    }


def text(task_id: str, message_id: str, text_delta: str, **extra: Any) -> dict[str, Any]:
    """One text delta: a token or a few."""
    return delta(task_id, message_id, {"type": "text", "text_delta": text_delta}, **extra)


def full(
    task_id: str, message_id: str, content: dict[str, Any] | str, **extra: Any
) -> dict[str, Any]:
    """Terminal: the whole content (a string is taken as agent text)."""
    body = text_content(content) if isinstance(content, str) else content
    return {
        "type": "full",
        "parent_task_message": parent(task_id, message_id),
        "content": body,
        **extra,
    }


def done(task_id: str, message_id: str, **extra: Any) -> dict[str, Any]:
    """Terminal: the stream is finished."""
    return {"type": "done", "parent_task_message": parent(task_id, message_id), **extra}
