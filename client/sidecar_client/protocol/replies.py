"""Replies from the sidecar to a client (PROTOCOL §3), and `hello` for the client side.

Each encoder returns one NDJSON line, newline included, in compact JSON:
`{"type":"error","seq":7,"code":"invalid_json","message":"..."}` and
`{"type":"ack","seq":12,"partition":3,"offset":1845}`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import orjson


class ErrorCode(StrEnum):
    """Every error code of PROTOCOL §3."""

    INVALID_JSON = "invalid_json"  # not JSON, not UTF-8, or not an object
    INVALID_FRAME = "invalid_frame"  # fails the schema
    FRAME_TOO_LARGE = "frame_too_large"  # longer than --max-frame-bytes
    STREAM_EXISTS = "stream_exists"  # a start for a stream already open
    STREAM_CLOSED = "stream_closed"  # a frame for a stream closed within the TTL
    DELIVERY_FAILED = "delivery_failed"  # Kafka refused the record or timed out
    STREAM_OWNED = "stream_owned"  # the stream belongs to another peer uid
    SHUTTING_DOWN = "shutting_down"


ERROR_CODES: frozenset[str] = frozenset(c.value for c in ErrorCode)


MAX_REPLY_LINE = 1024  # bytes, newline included (PROTOCOL §3)


class Rejection(Exception):
    """A line the sidecar refuses: every rejection (a bad frame, a stream rule, a
    delivery failure) is one of these, and `code` is the error reply's code."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def encode_error(seq: int, code: str, message: str) -> bytes:
    """One error line of at most MAX_REPLY_LINE bytes: a longer message is cut short
    (with "...") rather than let a client's input inflate the reply."""
    reply = {"type": "error", "seq": seq, "code": str(code), "message": message}
    while True:
        try:
            line = orjson.dumps(reply) + b"\n"
        except orjson.JSONEncodeError:
            # A lone surrogate cannot be encoded as UTF-8; an error reply must still go out.
            message = message.encode("utf-8", "backslashreplace").decode()
            reply["message"] = message
            continue
        if len(line) <= MAX_REPLY_LINE:
            return line
        # Cut in proportion (escapes and multi-byte characters make bytes > characters),
        # a little short so one more round at most is needed.
        keep = len(message) * (MAX_REPLY_LINE - 128) // len(line)
        message = message[: max(0, keep - 3)] + "..."
        reply["message"] = message


def encode_ack(seq: int, partition: int, offset: int) -> bytes:
    # Formatted by hand: acks are the one reply on the hot path, and hold only integers.
    return b'{"type":"ack","seq":%d,"partition":%d,"offset":%d}\n' % (seq, partition, offset)


def encode_hello(client: str | None, acks: str) -> bytes:
    """The optional first line (PROTOCOL §2.3). Not validated here: the sidecar is the
    judge of what it accepts, and a bad value comes back as an `invalid_frame` error."""
    hello: dict[str, Any] = {"type": "hello", "acks": acks}
    if client is not None:
        hello["client"] = client
    return orjson.dumps(hello) + b"\n"


# reply type -> its fields and their types (bool excluded from int below)
_REPLY_FIELDS: dict[str, tuple[tuple[str, type], ...]] = {
    "ack": (("seq", int), ("partition", int), ("offset", int)),
    "error": (("seq", int), ("code", str), ("message", str)),
}


def decode_reply(line: bytes) -> dict[str, Any]:
    """Parse one reply line (with or without its newline) for the client library.

    Raises ValueError (orjson's JSONDecodeError is one) if the line is not an `ack` or
    an `error` with the fields of PROTOCOL §3. Unknown extra fields are kept.
    """
    obj = orjson.loads(line)
    if type(obj) is dict:
        kind = obj.get("type")
        fields = _REPLY_FIELDS.get(kind) if type(kind) is str else None
        if fields is not None and all(type(obj.get(n)) is want for n, want in fields):
            reply: dict[str, Any] = obj
            return reply
    raise ValueError(f"not a sidecar reply: {bytes(line[:200])!r}")
