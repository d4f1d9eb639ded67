"""The sans-IO protocol: framing, decoding and replies (PROTOCOL §2-3), with fuzzing."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.model import Hello, Update
from sidecar.protocol import (
    FrameError,
    Line,
    LineFramer,
    Oversize,
    decode_frame,
    decode_reply,
    encode_ack,
    encode_error,
)
from tests.helpers import done, full, parent, start, text_delta

# -- framing ------------------------------------------------------------------------------


def test_lines_are_numbered_across_chunks() -> None:
    f = LineFramer(100)
    events = f.feed(b'{"a":1}\n{"b"') + f.feed(b":2}\n\n") + f.feed(b"x\ny")
    assert events == [Line(1, b'{"a":1}'), Line(2, b'{"b":2}'), Line(3, b""), Line(4, b"x")]
    assert f.close() is True  # "y" was half a line: discarded


def test_oversize_line_is_reported_once_and_never_held() -> None:
    f = LineFramer(1000)
    events = f.feed(b"ok\n")
    chunk = b"x" * 65536
    for _ in range(160):  # a 10 MB line
        events += f.feed(chunk)
        assert f.buffered <= 1000
    events += f.feed(b"tail\nnext\n")
    assert events == [Line(1, b"ok"), Oversize(2), Line(3, b"next")]


def test_oversize_within_one_chunk() -> None:
    f = LineFramer(4)
    assert f.feed(b"12345\n1234\n") == [Oversize(1), Line(2, b"1234")]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.lists(st.integers(1, 50), max_size=30), st.integers(1, 40))
def test_fuzz_any_chunking_gives_the_same_events(data: bytes, cuts: list[int], limit: int) -> None:
    whole = LineFramer(limit)
    expected = whole.feed(data)
    chunked = LineFramer(limit)
    got: list[Any] = []
    pos = 0
    for n in cuts:
        got += chunked.feed(data[pos : pos + n])
        pos += n
    got += chunked.feed(data[pos:])
    assert got == expected
    assert [e.seq for e in got] == list(range(1, len(got) + 1))
    assert len(got) == data.count(b"\n") or any(isinstance(e, Oversize) for e in got)
    codes = set()
    for e in got:
        if isinstance(e, Line):
            try:
                decode_frame(e.data)
            except FrameError as exc:  # the only exception decoding may raise
                codes.add(exc.code)
    assert codes <= {"invalid_json", "invalid_frame"}


# -- decoding -----------------------------------------------------------------------------


def raw(obj: Any) -> bytes:
    return orjson.dumps(obj)


@pytest.mark.parametrize(
    ("line", "code"),
    [
        (b"{nope", "invalid_json"),
        (b"", "invalid_json"),
        (b"\xff\xfe{}", "invalid_json"),
        (b'{"type": "done", "x": "\xc3\x28"}', "invalid_json"),
        (b"[1, 2]", "invalid_json"),
        (b'"text"', "invalid_json"),
        (b"3", "invalid_json"),
        (b"null", "invalid_json"),
        (raw({"no": "type"}), "invalid_frame"),
        (raw({"type": "bogus"}), "invalid_frame"),
        (raw({"type": 5}), "invalid_frame"),
        (raw({"type": "done"}), "invalid_frame"),
        (raw({"type": "done", "parent_task_message": {"id": "m"}}), "invalid_frame"),
        (raw({"type": "done", "parent_task_message": {"id": "", "task_id": "t"}}), "invalid_frame"),
        (raw({"type": "done", "parent_task_message": {"id": 1, "task_id": "t"}}), "invalid_frame"),
        (raw({**done("t", "m"), "index": True}), "invalid_frame"),
        (raw({**done("t", "m"), "index": "1"}), "invalid_frame"),
        (raw({"type": "start", "parent_task_message": parent("t", "m")}), "invalid_frame"),
        (raw({**full("t", "m", "x"), "content": "x"}), "invalid_frame"),
        (raw({"type": "delta", "parent_task_message": parent("t", "m")}), "invalid_frame"),
        (raw({**text_delta("t", "m", "x"), "delta": {"type": "nope"}}), "invalid_frame"),
        (
            raw({**text_delta("t", "m", "x"), "delta": {"type": "text", "text_delta": 3}}),
            "invalid_frame",
        ),
        (
            raw(
                {
                    **text_delta("t", "m", "x"),
                    "delta": {"type": "tool_request", "arguments_delta": "{"},
                }
            ),
            "invalid_frame",
        ),
        (
            raw(
                {
                    **text_delta("t", "m", "x"),
                    "delta": {"type": "reasoning_summary", "summary_index": "0"},
                }
            ),
            "invalid_frame",
        ),
        (raw({"type": "hello", "acks": "some"}), "invalid_frame"),
        (raw({"type": "hello", "client": 7}), "invalid_frame"),
    ],
)
def test_rejected_lines(line: bytes, code: str) -> None:
    with pytest.raises(FrameError) as exc:
        decode_frame(line)
    assert exc.value.code == code
    assert exc.value.message


CHANNELS: list[tuple[dict[str, Any], str, tuple[Any, ...]]] = [
    ({"type": "text", "text_delta": "a"}, "text_delta", ("text",)),
    ({"type": "data", "data_delta": "a"}, "data_delta", ("data",)),
    (
        {"type": "tool_request", "tool_call_id": "c", "name": "f", "arguments_delta": "a"},
        "arguments_delta",
        ("tool_request", "c", "f"),
    ),
    (
        {"type": "tool_response", "tool_call_id": "c", "name": "f", "content_delta": "a"},
        "content_delta",
        ("tool_response", "c", "f"),
    ),
    (
        {"type": "reasoning_summary", "summary_index": 2, "summary_delta": "a"},
        "summary_delta",
        ("reasoning_summary", 2),
    ),
    (
        {"type": "reasoning_content", "content_index": 1, "content_delta": "a"},
        "content_delta",
        ("reasoning_content", 1),
    ),
]


@pytest.mark.parametrize(("delta", "field", "channel"), CHANNELS)
def test_every_delta_type(delta: dict[str, Any], field: str, channel: tuple[Any, ...]) -> None:
    obj = {
        "type": "delta",
        "parent_task_message": parent("t", "m"),
        "delta": delta,
        "index": 3,
        "extra": [1],
    }
    line = raw(obj)
    u = decode_frame(line)
    assert isinstance(u, Update)
    assert (u.kind, u.task_id, u.message_id) == ("delta", "t", "m")
    assert u.channel == (*channel, 3)
    assert u.text_field == field
    assert u.text == "a"
    assert u.body == obj  # unknown fields kept
    assert u.raw == line


def test_null_text_counts_as_empty_and_other_updates() -> None:
    u = decode_frame(raw(text_delta("t", "m", None)))
    assert isinstance(u, Update)
    assert u.text == ""
    for obj in (start("t", "m"), full("t", "m", "x"), done("t", "m", index=None)):
        v = decode_frame(raw(obj))
        assert isinstance(v, Update)
        assert v.kind == obj["type"]
        assert v.channel is None


def test_hello() -> None:
    assert decode_frame(b'{"type":"hello"}') == Hello(client=None, acks="none")
    assert decode_frame(b'{"type":"hello","client":"a/1","acks":"all"}') == Hello("a/1", "all")


@settings(max_examples=200, deadline=None)
@given(
    st.text(min_size=1, max_size=20),
    st.text(min_size=1, max_size=20),
    st.one_of(st.none(), st.text(max_size=30)),
    st.one_of(st.none(), st.integers(-5, 5)),
)
def test_fuzz_valid_updates_round_trip(
    task: str, msg: str, text: str | None, index: int | None
) -> None:
    u = decode_frame(raw(text_delta(task, msg, text, index=index)))
    assert isinstance(u, Update)
    assert (u.task_id, u.message_id, u.text) == (task, msg, text or "")
    assert u.channel == ("text", index)


# -- replies ------------------------------------------------------------------------------


def test_replies_are_exactly_the_contract() -> None:
    assert orjson.loads(encode_ack(12, 3, 1845)) == {
        "type": "ack",
        "seq": 12,
        "partition": 3,
        "offset": 1845,
    }
    err = encode_error(7, "invalid_json", 'bad "line"')
    assert err.endswith(b"\n")
    assert orjson.loads(err) == {
        "type": "error",
        "seq": 7,
        "code": "invalid_json",
        "message": 'bad "line"',
    }
    assert decode_reply(encode_ack(1, 0, 0))["type"] == "ack"
    with pytest.raises(ValueError, match="not a sidecar reply"):
        decode_reply(b'{"type":"delta"}')
