"""Decoding and validating one line into a frame (PROTOCOL §2), sans-IO.

`decode_frame` turns a line into an `Update` or a `Hello`, or raises `FrameError` with
the reply's error code: `invalid_json` (not UTF-8, not JSON, or not an object) or
`invalid_frame` (fails the schema). Messages name the field by its path from the line's
root (`parent_task_message.task_id`, `delta.type`, ...) and say what was found instead.

Choices where PROTOCOL §2 leaves room:

- `start` and `full` must carry `content` as a JSON object: agentex's TaskMessageContent
  always dumps as one, so anything else is a malformed update, better caught here than
  by a consumer of the topic.
- JSON null counts as absent wherever a field is optional: `index`, a delta's text field,
  `hello.client` and `hello.acks` (null means the default, `none`), as pydantic's
  `model_dump` writes unset optionals as null.
- `tool_call_id` must be a non-empty string (it identifies the channel); `name` may be
  any string.
- The object is kept exactly as received (`Update.body`, `Update.raw`): unknown fields
  pass through to Kafka untouched, and nothing beyond the table below is checked.
- Forward compatibility (PROTOCOL §2.1): a delta whose `type` is a string not in the
  table below (agentex may add delta types), and `delta: null`, are accepted as deltas
  with no channel: they pass through in order, unmerged, exactly as sent. A delta that is
  neither an object nor null, or an object without a string `type`, is rejected: the
  type is what tells a consumer how to read it. A known delta type is still checked
  against the table, since coalescing relies on its channel and text fields.

Input limits (PROTOCOL §2.4), so that the record's value always says what its key and
headers say (the raw line is the value): `task_id` and `message_id` are at most
`MAX_ID_CHARS` characters with no control characters (C0, DEL, C1, U+2028, U+2029);
`index` fits a signed 64-bit integer; and a line with a duplicate key anywhere is
rejected, not normalised: orjson keeps the last of duplicate keys, other parsers the
first, so `{"type":"delta",...,"type":"done"}` would be a `done` to us and a `delta` to
a consumer (a `type` that disagrees with itself is the same case).

The valid path does only dict lookups and `type() is` checks; working out the exact
reason for a rejection is left to the (cold) error path.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import orjson

from sidecar_client.protocol.model import AckMode, Hello, Update, UpdateKind
from sidecar_client.protocol.replies import ErrorCode, Rejection

INVALID_JSON = ErrorCode.INVALID_JSON
INVALID_FRAME = ErrorCode.INVALID_FRAME


class FrameError(Rejection):
    """A line that is not a valid frame: `invalid_json` or `invalid_frame`."""


FieldKind = Literal["id", "str", "int"]


class DeltaSpec(NamedTuple):
    text_field: str
    # (name, kind): what must match for two deltas to merge, in channel order.
    channel_fields: tuple[tuple[str, FieldKind], ...]


# PROTOCOL §2.1, the delta table: delta type -> its text field and channel fields.
DELTA_TYPES: dict[str, DeltaSpec] = {
    "text": DeltaSpec("text_delta", ()),
    "data": DeltaSpec("data_delta", ()),
    "tool_request": DeltaSpec("arguments_delta", (("tool_call_id", "id"), ("name", "str"))),
    "tool_response": DeltaSpec("content_delta", (("tool_call_id", "id"), ("name", "str"))),
    "reasoning_summary": DeltaSpec("summary_delta", (("summary_index", "int"),)),
    "reasoning_content": DeltaSpec("content_delta", (("content_index", "int"),)),
}

UPDATE_KINDS: tuple[UpdateKind, ...] = ("start", "delta", "full", "done")
ACK_MODES: dict[str, AckMode] = {"none": "none", "terminal": "terminal", "all": "all"}

# kind -> (exact type, must be non-empty, how a message names it). Types are compared
# with `is`: bool is an int subclass, and `true` is never a valid index.
_FIELD_KINDS: dict[FieldKind, tuple[type, bool, str]] = {
    "id": (str, True, "a non-empty string"),
    "str": (str, False, "a string"),
    "int": (int, False, "an integer"),
}


# The table as the hot path reads it: delta type -> (text field, channel fields as
# (name, exact type, must be non-empty)), so checking a channel is one plain loop.
_SPECS: dict[str, tuple[str, tuple[tuple[str, type, bool], ...]]] = {
    dtype: (
        spec.text_field,
        tuple((n, _FIELD_KINDS[k][0], _FIELD_KINDS[k][1]) for n, k in spec.channel_fields),
    )
    for dtype, spec in DELTA_TYPES.items()
}
_FRAME_TYPES = "hello, " + ", ".join(UPDATE_KINDS)
_loads = orjson.loads
_dumps = orjson.dumps
_JSONDecodeError = orjson.JSONDecodeError

MAX_ID_CHARS = 256
INDEX_MIN, INDEX_MAX = -(2**63), 2**63 - 1
# What an id may not contain: it is a record key and a header, and ends up in logs.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_find_control = _CONTROL.search
# An escaped colon hides from the byte count of `_has_duplicate_keys`.
_ESCAPED_COLON = re.compile(rb"\\u003[aA]")


def decode_frame(line: bytes) -> Update | Hello:
    """Decode one line (without its newline); raise `FrameError` if it is rejected."""
    try:
        obj = _loads(line)
    except _JSONDecodeError as exc:
        raise _not_json(line, exc) from None
    if type(obj) is not dict:
        raise FrameError(INVALID_JSON, f"expected a JSON object, got {_json_kind(obj)}")
    # Duplicate keys. Every key of the line is followed by a colon outside any string, so
    # the line has at least as many colons as keys, and at least as many keys as the
    # parsed objects kept. If the colons equal the keys of the objects an update usually
    # has, those are all its objects and no key was dropped: proven without the
    # re-encoding of `_has_duplicate_keys`, which costs more than the parse. Any other
    # line (a colon in a text, deeper objects) takes that exact check.
    ptm = obj.get("parent_task_message")
    delta = obj.get("delta")
    content = obj.get("content")
    keys = len(obj)
    if type(ptm) is dict:
        keys += len(ptm)
        inner = ptm.get("content")
        if type(inner) is dict:
            keys += len(inner)
    if type(delta) is dict:
        keys += len(delta)
    if type(content) is dict:
        keys += len(content)
    if line.count(b":") != keys and _has_duplicate_keys(obj, line):
        raise _invalid("an object has a duplicate key (the same name twice)")
    kind = obj.get("type")
    if kind == "delta":
        return _decode_delta(obj, line, ptm, delta)
    decode = _DECODERS.get(kind) if type(kind) is str else None
    if decode is None:
        raise _invalid(f"type must be one of {_FRAME_TYPES} ({_got_at(obj, 'type')})")
    return decode(obj, line)


def _head(obj: dict[str, Any], ptm: Any) -> tuple[str, str, int | None]:
    """The ids and index every update carries; `ptm` is its parent_task_message."""
    if type(ptm) is dict:
        task_id = ptm.get("task_id")
        message_id = ptm.get("id")
        if (
            type(task_id) is str
            and type(message_id) is str
            and 0 < len(task_id) <= MAX_ID_CHARS
            and 0 < len(message_id) <= MAX_ID_CHARS
            and _clean(task_id)
            and _clean(message_id)
        ):
            index = obj.get("index")
            if index is None or (type(index) is int and INDEX_MIN <= index <= INDEX_MAX):
                return task_id, message_id, index
    raise _head_error(obj)


def _clean(value: str) -> bool:
    """No control character in an id. `isprintable` (one C pass, no regex machinery) is
    stricter than the rule: every character it passes is allowed, and what it refuses
    (spaces other than " ", format characters...) gets the exact check."""
    return value.isprintable() or not _find_control(value)


def _has_duplicate_keys(obj: dict[str, Any], line: bytes) -> bool:
    """True if some object of the line names a key twice (orjson keeps the last).

    Every key is followed by exactly one colon outside strings, and a string holds as
    many colons raw as decoded unless one is escaped (\\u003a). So, with no escaped
    colon, the line has as many colons as the parsed object re-encoded (orjson writes
    colons in strings as they are) exactly when no key was dropped as a duplicate: a
    dropped key takes at least its own colon with it. The re-encoding runs in C, about
    half a microsecond for a typical delta. Lines with an escaped colon take the exact,
    slower path.
    """
    if b"\\u003" in line and _ESCAPED_COLON.search(line):
        return _exact_duplicates(line)
    try:
        again = _dumps(obj)
    except orjson.JSONEncodeError:  # nested deeper than orjson writes (254)
        return _exact_duplicates(line)
    return again.count(b":") != line.count(b":")


def _exact_duplicates(line: bytes) -> bool:
    found = False

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal found
        d = dict(items)
        if len(d) != len(items):
            found = True
        return d

    try:
        json.loads(line, object_pairs_hook=pairs)
    except RecursionError:
        raise _invalid("the line is nested too deeply") from None
    return found


def _decode_delta(obj: dict[str, Any], line: bytes, ptm: Any, delta: Any) -> Update:
    """A delta update; `ptm` and `delta` are the line's two objects, as decode_frame
    looked them up already."""
    task_id, message_id, index = _head(obj, ptm)
    if type(delta) is dict:
        dtype = delta.get("type")
        spec = _SPECS.get(dtype) if type(dtype) is str else None
        if spec is not None:
            text_field, fields = spec
            text = delta.get(text_field)
            if text is None:
                text = ""
            elif type(text) is not str:
                raise _delta_error(obj)
            if not fields:
                channel: tuple[Any, ...] = (dtype, index)
            else:
                values: list[Any] = [dtype]
                for name, want_type, nonempty in fields:
                    value = delta.get(name)
                    if type(value) is not want_type or (nonempty and not value):
                        raise _delta_error(obj)
                    values.append(value)
                values.append(index)
                channel = tuple(values)
            return Update("delta", task_id, message_id, obj, line, channel, text_field, text)
        if type(dtype) is str:
            # A delta type this sidecar does not know (agentex may add some): passed
            # through in order, unmerged (channel None merges with nothing), as sent.
            return Update("delta", task_id, message_id, obj, line)
    elif delta is None and "delta" in obj:  # null passes, missing does not: it is required
        return Update("delta", task_id, message_id, obj, line)  # likewise, unmerged
    raise _delta_error(obj)


def _decode_start(obj: dict[str, Any], line: bytes) -> Update:
    return _with_content("start", obj, line)


def _decode_full(obj: dict[str, Any], line: bytes) -> Update:
    return _with_content("full", obj, line)


def _with_content(kind: UpdateKind, obj: dict[str, Any], line: bytes) -> Update:
    task_id, message_id, _ = _head(obj, obj.get("parent_task_message"))
    if type(obj.get("content")) is not dict:
        raise _invalid(f"content must be an object in a {kind} update ({_got_at(obj, 'content')})")
    return Update(kind, task_id, message_id, obj, line)


def _decode_done(obj: dict[str, Any], line: bytes) -> Update:
    task_id, message_id, _ = _head(obj, obj.get("parent_task_message"))
    return Update("done", task_id, message_id, obj, line)


def _decode_hello(obj: dict[str, Any], line: bytes) -> Hello:
    client = obj.get("client")
    if client is not None and type(client) is not str:
        raise _invalid(f"client must be a string or null in a hello ({_got_at(obj, 'client')})")
    acks = obj.get("acks")
    if acks is None:
        return Hello(client, "none")
    mode = ACK_MODES.get(acks) if type(acks) is str else None
    if mode is None:
        got = _got_at(obj, "acks")
        raise _invalid(f"acks must be one of none, terminal, all in a hello ({got})")
    return Hello(client, mode)


# "delta" is not here: decode_frame calls _decode_delta itself, with the objects it holds.
_DECODERS: dict[str, Callable[[dict[str, Any], bytes], Update | Hello]] = {
    "start": _decode_start,
    "full": _decode_full,
    "done": _decode_done,
    "hello": _decode_hello,
}


# -- the cold path: say exactly what is wrong ---------------------------------------------


def _invalid(message: str) -> FrameError:
    return FrameError(INVALID_FRAME, message)


def _not_json(line: bytes, exc: orjson.JSONDecodeError) -> FrameError:
    try:
        text = line.decode()
    except UnicodeDecodeError as err:
        return FrameError(INVALID_JSON, f"line is not valid UTF-8 (at byte {err.start})")
    if not text.strip():
        return FrameError(INVALID_JSON, "empty line; expected a JSON object")
    return FrameError(INVALID_JSON, f"not valid JSON: {exc.msg} (at character {exc.pos})")


def _head_error(obj: dict[str, Any]) -> FrameError:
    ptm = obj.get("parent_task_message")
    if type(ptm) is not dict:
        got = _got_at(obj, "parent_task_message")
        return _invalid(f"parent_task_message must be an object ({got})")
    for key in ("task_id", "id"):
        value = ptm.get(key)
        if type(value) is not str or not value:
            got = _got_at(ptm, key)
            return _invalid(f"parent_task_message.{key} must be a non-empty string ({got})")
        if len(value) > MAX_ID_CHARS:
            return _invalid(
                f"parent_task_message.{key} must be at most {MAX_ID_CHARS} characters "
                f"(got {len(value)})"
            )
        if _find_control(value):
            return _invalid(
                f"parent_task_message.{key} must not contain control characters "
                f"({_got_at(ptm, key)})"
            )
    index = obj.get("index")
    if type(index) is int:
        return _invalid(f"index must fit a signed 64-bit integer ({_got_at(obj, 'index')})")
    return _invalid(f"index must be an integer or null ({_got_at(obj, 'index')})")


def _delta_error(obj: dict[str, Any]) -> FrameError:
    delta = obj.get("delta")
    if type(delta) is not dict:
        got = _got_at(obj, "delta")
        return _invalid(f"delta must be an object or null in a delta update ({got})")
    dtype = delta.get("type")
    spec = DELTA_TYPES.get(dtype) if type(dtype) is str else None
    if spec is None:
        return _invalid(f"delta.type must be a string ({_got_at(delta, 'type')})")
    for name, kind in spec.channel_fields:
        want_type, nonempty, want = _FIELD_KINDS[kind]
        value = delta.get(name)
        if type(value) is not want_type or (nonempty and not value):
            got = _got_at(delta, name)
            return _invalid(f"delta.{name} must be {want} in a {dtype} delta ({got})")
    field = spec.text_field
    got = _got_at(delta, field)
    return _invalid(f"delta.{field} must be a string or null in a {dtype} delta ({got})")


def _got_at(container: dict[str, Any], key: str) -> str:
    """What `container[key]` holds, for a message: "it is missing", "got 'x'", ..."""
    if key not in container:
        return "it is missing"
    value = container[key]
    if type(value) is str:
        if not value:
            return "got an empty string"
        shown = repr(value[:40]) + ("..." if len(value) > 40 else "")
        return f"got {shown}"
    if value is None or type(value) in (bool, int, float):
        return f"got {orjson.dumps(value).decode()[:40]}"
    return f"got {_json_kind(value)}"


def _json_kind(value: object) -> str:
    return _JSON_KINDS.get(type(value), type(value).__name__)


_JSON_KINDS: dict[type, str] = {
    dict: "an object",
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}
