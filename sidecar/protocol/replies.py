"""Replies from the sidecar to a client (PROTOCOL §3), and hello for the client side."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import orjson


class ErrorCode(StrEnum):
    INVALID_JSON = "invalid_json"
    INVALID_FRAME = "invalid_frame"
    FRAME_TOO_LARGE = "frame_too_large"
    STREAM_EXISTS = "stream_exists"
    STREAM_CLOSED = "stream_closed"
    DELIVERY_FAILED = "delivery_failed"
    SHUTTING_DOWN = "shutting_down"


def encode_error(seq: int, code: str, message: str) -> bytes:
    return (
        orjson.dumps({"type": "error", "seq": seq, "code": str(code), "message": message}) + b"\n"
    )


def encode_ack(seq: int, partition: int, offset: int) -> bytes:
    # Formatted by hand: acks are the one reply on the hot path.
    return b'{"type":"ack","seq":%d,"partition":%d,"offset":%d}\n' % (seq, partition, offset)


def encode_hello(client: str | None, acks: str) -> bytes:
    return orjson.dumps({"type": "hello", "client": client, "acks": acks}) + b"\n"


def decode_reply(line: bytes) -> dict[str, Any]:
    obj = orjson.loads(line)
    if not isinstance(obj, dict) or obj.get("type") not in ("ack", "error"):
        raise ValueError(f"not a sidecar reply: {line[:200]!r}")
    return obj
