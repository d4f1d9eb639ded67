"""Input limits (PROTOCOL §2.4; issue 10 failure 5): a line is accepted only if every
JSON parser reads it the same way, so the record's value (the line itself) always says
what its key and headers say. Duplicate keys are rejected, not normalised: re-encoding
would change the bytes the agent sent, and the contract keeps them as sent."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar_client.protocol import FrameError, decode_frame
from sidecar_client.protocol.frames import MAX_ID_CHARS
from sidecar_client.protocol.model import Update

# A JSON object as a list of (key, value) pairs, so a key can appear twice; values are
# JSON text already, or nested pair lists.
Pairs = list[tuple[str, Any]]


def encode(value: Any) -> str:
    if isinstance(value, list):
        return "{" + ",".join(f"{json.dumps(k)}:{encode(v)}" for k, v in value) + "}"
    return str(value)


def first_wins(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        out.setdefault(k, v)
    return out


def parses(raw: str) -> tuple[Any, Any]:
    """The line as a last-wins parser (Python's json, orjson) and a first-wins parser
    (some consumers) read it."""
    return json.loads(raw), json.loads(raw, object_pairs_hook=first_wins)


ids = st.one_of(
    st.sampled_from(["t", "m", "task-1", "x" * MAX_ID_CHARS, "x" * (MAX_ID_CHARS + 1)]),
    st.text(max_size=8),
)
kinds = st.sampled_from(["start", "delta", "full", "done", "hello", "bogus"])
indexes = st.one_of(
    st.none(),
    st.integers(-(2**64), 2**64),
    st.sampled_from([2**63 - 1, 2**63, -(2**63), -(2**63) - 1]),
)


@st.composite
def lines(draw: st.DrawFn) -> str:
    """Mostly-valid updates with, now and then, a key repeated at any level, a second
    `type`, an odd id or an out-of-range index."""
    ptm: Pairs = [("task_id", json.dumps(draw(ids))), ("id", json.dumps(draw(ids)))]
    if draw(st.booleans()):
        ptm.append((draw(st.sampled_from(["task_id", "id"])), json.dumps(draw(ids))))
    kind = draw(kinds)
    top: Pairs = [("type", json.dumps(kind)), ("parent_task_message", ptm)]
    delta: Pairs = [("type", '"text"'), ("text_delta", json.dumps(draw(st.text(max_size=6))))]
    if draw(st.booleans()):
        delta.append(draw(st.sampled_from([("text_delta", '"other"'), ("type", '"data"')])))
    top.append(("delta", delta))
    top.append(("content", [("type", '"text"'), ("content", '"c"')]))
    index = draw(indexes)
    if index is not None:
        top.append(("index", str(index)))
    if draw(st.booleans()):
        top.append(draw(st.sampled_from([("type", '"done"'), ("type", '"delta"'), ("index", "1")])))
    draw(st.randoms()).shuffle(top)
    return encode(top)


@settings(max_examples=1500, deadline=None)
@given(lines())
def test_an_accepted_update_says_the_same_to_every_parser(raw: str) -> None:
    rejected: str | None = None
    try:
        frame = decode_frame(raw.encode())
    except FrameError as exc:
        rejected = exc.code
    if rejected is not None:
        assert rejected == "invalid_frame"
        return
    last, first = parses(raw)
    assert last == first  # no duplicate key anywhere
    if not isinstance(frame, Update):
        return
    ptm = last["parent_task_message"]
    # What the record's key and headers will say is what its value says.
    assert (frame.kind, frame.task_id, frame.message_id) == (
        last["type"],
        ptm["task_id"],
        ptm["id"],
    )
    for ident in (frame.task_id, frame.message_id):
        assert 0 < len(ident) <= MAX_ID_CHARS
        assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in ident)
    index = last.get("index")
    assert index is None or -(2**63) <= index < 2**63


DELTA = (
    '{"type":"delta","parent_task_message":{"id":"m","task_id":"t"},'
    '"delta":{"type":"text","text_delta":"hi"}'
)


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        # Failure 5's reproductions: key says one task, the value's first task_id another.
        (
            '{"type":"delta","parent_task_message":{"task_id":"victim","id":"m",'
            '"task_id":"t"},"delta":{"type":"text","text_delta":"x"}}',
            "duplicate key",
        ),
        (DELTA.replace('{"type":"delta"', '{"type":"done","type":"delta"') + "}", "duplicate key"),
        (DELTA + ',"type":"done"}', "duplicate key"),
        (DELTA + ',"index":9223372036854775808}', "signed 64-bit"),
        (DELTA + ',"index":-9223372036854775809}', "index must"),  # orjson: a float
        # The same, hidden behind escapes (the exact path).
        (DELTA.replace('"hi"', '"a\\u003ab"') + ',"type":"delta"}', "duplicate key"),
        (DELTA.replace('"id":"m"', '"i\\u0064":"m","id":"n"') + "}", "duplicate key"),
        # A colon in a text (the colon count proves nothing: the re-encoding decides).
        (DELTA.replace('"hi"', '"a:b"') + ',"type":"delta"}', "duplicate key"),
        # One level deeper than the counted objects.
        (
            DELTA.replace('"task_id":"t"', '"task_id":"t","content":{"a":1,"a":2}') + "}",
            "duplicate",
        ),
    ],
)
def test_self_contradicting_lines_are_invalid_frames(raw: str, why: str) -> None:
    with pytest.raises(FrameError) as exc:
        decode_frame(raw.encode())
    assert exc.value.code == "invalid_frame"
    assert why in exc.value.message


@pytest.mark.parametrize(
    "raw",
    [
        DELTA + "}",
        DELTA + ',"index":9223372036854775807}',
        DELTA + ',"index":-9223372036854775808}',
        DELTA.replace('"hi"', '"a:b\\u003ac \\"d\\": e"') + "}",  # colons in text
        DELTA.replace('"hi"', '"\\u00e9t\\u00e9"') + ',"x":{"a":1,"b":{"a":2}}}',
    ],
)
def test_honest_lines_still_pass(raw: str) -> None:
    assert isinstance(decode_frame(raw.encode()), Update)


@pytest.mark.parametrize(
    "ident", ["a\nb", "a\rb", "\x00", "a\x1bb", "\x7f", "\x85", "a\u2028b", "x" * 257]
)
def test_ids_with_control_characters_or_too_long_are_invalid(ident: str) -> None:
    for field in ("task_id", "id"):
        obj = {
            "type": "done",
            "parent_task_message": {"task_id": "t", "id": "m", field: ident},
        }
        with pytest.raises(FrameError) as exc:
            decode_frame(json.dumps(obj).encode())
        assert exc.value.code == "invalid_frame"
        assert f"parent_task_message.{field}" in exc.value.message
        assert "\n" not in exc.value.message and len(exc.value.message) < 300
