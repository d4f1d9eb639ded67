"""decode_frame: every update kind and delta type, every rejection, and fuzzing (§2)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar_client.protocol import DELTA_TYPES, FrameError, decode_frame
from sidecar_client.protocol.model import Hello, Update
from tests.protocol.agentex import delta, done, full, parent, raw, start, text_delta, update

# (delta object, text field, channel without the update index)
DELTAS: list[tuple[dict[str, Any], str, tuple[Any, ...]]] = [
    ({"type": "text", "text_delta": "a"}, "text_delta", ("text",)),
    ({"type": "data", "data_delta": "a"}, "data_delta", ("data",)),
    (
        {"type": "tool_request", "tool_call_id": "c", "name": "f", "arguments_delta": "a"},
        "arguments_delta",
        ("tool_request", "c", "f"),
    ),
    (
        {"type": "tool_response", "tool_call_id": "c", "name": "", "content_delta": "a"},
        "content_delta",
        ("tool_response", "c", ""),
    ),
    (
        {"type": "reasoning_summary", "summary_index": 2, "summary_delta": "a"},
        "summary_delta",
        ("reasoning_summary", 2),
    ),
    (
        {"type": "reasoning_content", "content_index": -1, "content_delta": "a"},
        "content_delta",
        ("reasoning_content", -1),
    ),
]


def test_the_table_covers_every_delta_type() -> None:
    assert {d["type"] for d, _, _ in DELTAS} == set(DELTA_TYPES)


@pytest.mark.parametrize(("body", "field", "channel"), DELTAS)
@pytest.mark.parametrize("index", [3, None, "missing"])
def test_every_delta_type(
    body: dict[str, Any], field: str, channel: tuple[Any, ...], index: Any
) -> None:
    obj = delta({**body, "future": 1}, "task", "msg", extra=[1])
    if index != "missing":
        obj["index"] = index
    line = raw(obj)
    u = decode_frame(line)
    assert isinstance(u, Update)
    assert (u.kind, u.task_id, u.message_id, u.key) == ("delta", "task", "msg", ("task", "msg"))
    assert u.channel == (*channel, None if index == "missing" else index)
    assert (u.text_field, u.text) == (field, "a")
    assert u.body == obj  # unknown fields kept, at both levels
    assert u.raw is line


@pytest.mark.parametrize(("body", "field", "channel"), DELTAS)
@pytest.mark.parametrize("text", [None, "missing"])
def test_null_or_missing_text_counts_as_empty(
    body: dict[str, Any], field: str, channel: tuple[Any, ...], text: str | None
) -> None:
    body = {k: v for k, v in body.items() if k != field}
    if text is None:
        body[field] = None
    u = decode_frame(raw(delta(body)))
    assert isinstance(u, Update)
    assert u.text == ""
    assert u.channel == (*channel, None)


@pytest.mark.parametrize(
    "body",
    [
        None,
        {"type": "foo"},
        {"type": "image_delta", "url_delta": "h", "extra": {"a": [1]}},
        {"type": "", "text_delta": 3},
        {"type": "TEXT", "text_delta": "x"},  # type names are case-sensitive, as in agentex
    ],
)
def test_unknown_delta_types_and_null_pass_through_unmerged(body: dict[str, Any] | None) -> None:
    # PROTOCOL §2.1 forward compatibility: no channel (merges with nothing), no text,
    # every field kept exactly as sent.
    obj = update("delta", "task", "msg", delta=body, index=2, future={"x": 1})
    line = raw(obj)
    u = decode_frame(line)
    assert isinstance(u, Update)
    assert (u.kind, u.key, u.channel, u.text_field, u.text) == (
        "delta",
        ("task", "msg"),
        None,
        None,
        "",
    )
    assert u.body == obj
    assert u.raw is line


@pytest.mark.parametrize("obj", [start(), full(), done(), done(index=4), start(index=None)])
def test_other_updates(obj: dict[str, Any]) -> None:
    obj["unknown"] = {"kept": True}
    u = decode_frame(raw(obj))
    assert isinstance(u, Update)
    assert (u.kind, u.task_id, u.message_id) == (obj["type"], "t", "m")
    assert (u.channel, u.text_field, u.text) == (None, None, "")
    assert u.body == obj


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ({"type": "hello"}, Hello(None, "none")),
        ({"type": "hello", "client": "a/1", "acks": "all"}, Hello("a/1", "all")),
        ({"type": "hello", "client": None, "acks": None}, Hello(None, "none")),
        ({"type": "hello", "acks": "terminal", "extra": 1}, Hello(None, "terminal")),
    ],
)
def test_hello(obj: dict[str, Any], expected: Hello) -> None:
    assert decode_frame(raw(obj)) == expected


def nested(field: str, value: Any) -> dict[str, Any]:
    obj = done()
    obj["parent_task_message"][field] = value
    return obj


TOOL = {"type": "tool_request", "tool_call_id": "c", "name": "f", "arguments_delta": "{"}
REJECTED: list[tuple[bytes, str, str]] = [
    # (line, code, a piece of the message)
    (b"", "invalid_json", "empty line"),
    (b"  \r", "invalid_json", "empty line"),
    (b"{nope", "invalid_json", "not valid JSON"),
    (b"{}{}", "invalid_json", "not valid JSON"),
    (b'{"a":NaN}', "invalid_json", "not valid JSON"),
    (b'{"a":"\\ud800"}', "invalid_json", "not valid JSON"),  # a lone surrogate
    (b"\xff\xfe{}", "invalid_json", "not valid UTF-8 (at byte 0)"),
    (b'{"type": "done", "x": "\xc3\x28"}', "invalid_json", "not valid UTF-8"),
    (b"[1]", "invalid_json", "expected a JSON object, got an array"),
    (b'"x"', "invalid_json", "got a string"),
    (b"3", "invalid_json", "got a number"),
    (b"null", "invalid_json", "got null"),
    (b"true", "invalid_json", "got a boolean"),
    (raw({"no": "type"}), "invalid_frame", "type must be one of hello, start, "),
    (raw({"type": "bogus"}), "invalid_frame", "(got 'bogus')"),
    (raw({"type": 5}), "invalid_frame", "(got 5)"),
    (raw({"type": ["delta"]}), "invalid_frame", "(got an array)"),
    (raw({"type": "x" * 500}), "invalid_frame", "xxx'...)"),  # clipped, not echoed whole
    (raw({"type": "done"}), "invalid_frame", "parent_task_message must be an object (it is"),
    (raw({**done(), "parent_task_message": "p"}), "invalid_frame", "(got 'p')"),
    (raw(nested("task_id", None)), "invalid_frame", "task_id must be a non-empty string"),
    (raw({"type": "done", "parent_task_message": {"id": "m"}}), "invalid_frame", "missing"),
    (raw(nested("task_id", "")), "invalid_frame", "(got an empty string)"),
    (raw(nested("id", "")), "invalid_frame", "parent_task_message.id must be a non-empty"),
    (raw(nested("id", 1)), "invalid_frame", "parent_task_message.id must be a non-empty"),
    (raw(done(index=True)), "invalid_frame", "index must be an integer or null (got true)"),
    (raw(text_delta("x", index=False)), "invalid_frame", "(got false)"),
    (raw(done(index="1")), "invalid_frame", "index must be an integer or null (got '1')"),
    (raw(done(index=1.5)), "invalid_frame", "(got 1.5)"),
    (raw(start(index=[1])), "invalid_frame", "(got an array)"),
    (raw(update("start")), "invalid_frame", "content must be an object in a start update"),
    (raw(full(content="x")), "invalid_frame", "(got 'x')"),
    (raw(full(content=None)), "invalid_frame", "(got null)"),
    (raw(update("delta")), "invalid_frame", "delta must be an object or null in a delta update"),
    (raw(update("delta", delta="text")), "invalid_frame", "(got 'text')"),
    (raw(update("delta", delta=[])), "invalid_frame", "(got an array)"),
    (raw(delta({"text_delta": "x"})), "invalid_frame", "delta.type must be a string (it is"),
    (raw(delta({"type": {}})), "invalid_frame", "(got an object)"),
    (raw(delta({"type": None})), "invalid_frame", "delta.type must be a string (got null)"),
    (raw(text_delta(3)), "invalid_frame", "delta.text_delta must be a string or null"),  # type: ignore[arg-type]
    (raw(delta({"type": "data", "data_delta": {}})), "invalid_frame", "(got an object)"),
    (
        raw(delta({"type": "tool_request", "arguments_delta": "{"})),
        "invalid_frame",
        "delta.tool_call_id must be a non-empty string in a tool_request delta (it is missing)",
    ),
    (raw(delta({**TOOL, "tool_call_id": ""})), "invalid_frame", "(got an empty string)"),
    (raw(delta({**TOOL, "name": None})), "invalid_frame", "delta.name must be a string"),
    (raw(delta({**TOOL, "name": 1})), "invalid_frame", "(got 1)"),
    (raw(delta({**TOOL, "arguments_delta": 1})), "invalid_frame", "arguments_delta must be a"),
    (
        raw(delta({"type": "tool_response", "tool_call_id": 7, "name": "f"})),
        "invalid_frame",
        "delta.tool_call_id must be a non-empty string in a tool_response delta (got 7)",
    ),
    (
        raw(delta({"type": "reasoning_summary", "summary_index": "0"})),
        "invalid_frame",
        "delta.summary_index must be an integer in a reasoning_summary delta (got '0')",
    ),
    (
        raw(delta({"type": "reasoning_content", "content_index": True})),
        "invalid_frame",
        "delta.content_index must be an integer in a reasoning_content delta (got true)",
    ),
    (
        raw(delta({"type": "reasoning_content", "content_index": 0, "content_delta": [1]})),
        "invalid_frame",
        "delta.content_delta must be a string or null in a reasoning_content delta",
    ),
    (raw({"type": "hello", "acks": "some"}), "invalid_frame", "acks must be one of none, "),
    (raw({"type": "hello", "acks": ["all"]}), "invalid_frame", "(got an array)"),
    (raw({"type": "hello", "client": 7}), "invalid_frame", "client must be a string or null"),
]


@pytest.mark.parametrize(("line", "code", "message"), REJECTED)
def test_rejected_lines(line: bytes, code: str, message: str) -> None:
    with pytest.raises(FrameError) as exc:
        decode_frame(line)
    assert exc.value.code == code
    assert message in exc.value.message
    assert str(exc.value) == f"{code}: {exc.value.message}"


# -- fuzzing ------------------------------------------------------------------------------

# PROTOCOL §2.4: ids carry no control characters.
ids = st.text(
    st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\u2028\u2029"),
    min_size=1,
    max_size=12,
)
texts = st.one_of(st.none(), st.text(max_size=20))
indexes = st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1))


@st.composite
def delta_bodies(draw: st.DrawFn) -> tuple[dict[str, Any], tuple[Any, ...]]:
    """A valid delta object of any type, and its channel without the update index."""
    dtype = draw(st.sampled_from(sorted(DELTA_TYPES)))
    spec = DELTA_TYPES[dtype]
    body: dict[str, Any] = {"type": dtype}
    channel: list[Any] = [dtype]
    for name, kind in spec.channel_fields:
        value = draw(st.integers(0, 50) if kind == "int" else ids if kind == "id" else texts)
        if kind == "str" and value is None:
            value = ""
        body[name] = value
        channel.append(value)
    text = draw(texts)
    if text is not None or draw(st.booleans()):
        body[spec.text_field] = text
    return body, tuple(channel)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(ids, ids, indexes, delta_bodies(), st.dictionaries(st.text(), json_values, max_size=3))
def test_fuzz_valid_deltas_round_trip(
    task: str,
    msg: str,
    index: int | None,
    body_channel: tuple[dict[str, Any], tuple[Any, ...]],
    extra: dict[str, Any],
) -> None:
    body, channel = body_channel
    obj = {**extra, **delta(body, task, msg, index=index)}
    u = decode_frame(raw(obj))
    assert isinstance(u, Update)
    assert (u.kind, u.task_id, u.message_id) == ("delta", task, msg)
    assert u.channel == (*channel, index)
    text_field = DELTA_TYPES[body["type"]].text_field
    assert (u.text_field, u.text) == (text_field, body.get(text_field) or "")
    assert u.body == obj


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["start", "full", "done"]), ids, ids, indexes)
def test_fuzz_valid_other_updates_round_trip(
    kind: str, task: str, msg: str, index: int | None
) -> None:
    obj = {"start": start, "full": full, "done": done}[kind](task, msg, index=index)
    u = decode_frame(raw(obj))
    assert isinstance(u, Update)
    assert (u.kind, u.key, u.channel) == (kind, (task, msg), None)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["start", "delta", "full", "done", "hello"]),
    st.dictionaries(
        st.sampled_from(["parent_task_message", "index", "content", "delta", "client", "acks"]),
        json_values | st.just(parent("t", "m")) | delta_bodies().map(lambda bc: bc[0]),
    ),
)
def test_fuzz_schema_only_raises_frame_errors(kind: str, fields: dict[str, Any]) -> None:
    try:
        frame: Update | Hello | FrameError = decode_frame(raw({"type": kind, **fields}))
    except FrameError as exc:
        frame = exc
    if isinstance(frame, FrameError):
        assert (frame.code, bool(frame.message)) == ("invalid_frame", True)
    else:
        assert isinstance(frame, Hello if kind == "hello" else Update)
