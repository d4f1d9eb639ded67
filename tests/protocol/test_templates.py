"""FrameDecoder: a stream's later delta lines decode from a template, with exactly the
result decode_frame gives (the same update, or the same error), within its bounds."""

from __future__ import annotations

import gc
import tracemalloc
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar_client.protocol import FrameDecoder, FrameError, decode_frame
from sidecar_client.protocol.model import Hello, Update
from sidecar_client.protocol.templates import SEEN_BYTES, template_cost
from tests.protocol.agentex import delta, raw, text_delta
from tests.protocol.test_frames import DELTAS

Outcome = Update | Hello | tuple[str, str]


def outcome(decode: Any, line: bytes) -> Outcome:
    try:
        result: Update | Hello = decode(line)
    except FrameError as exc:
        return (exc.code, exc.message)
    return result


def split(line: bytes, text: str) -> tuple[bytes, bytes]:
    """The bytes before and after `text`'s literal in `line` (as orjson writes it)."""
    literal = orjson.dumps(text)
    at = line.index(b'_delta":' + literal) + len(b'_delta":')
    return line[:at], line[at + len(literal) :]


def learned(first: bytes) -> FrameDecoder:
    """A decoder that has seen `first` twice: once to note its prefix, once to learn it."""
    decoder = FrameDecoder()
    assert decoder.decode(first) == decode_frame(first)
    assert len(decoder) == 0 and decoder.held == SEEN_BYTES
    assert decoder.decode(first) == decode_frame(first)
    assert len(decoder) == 1 and decoder.hits == 0
    return decoder


def cost(line: bytes) -> int:
    return template_cost(line, line.count(b":"), line.count(b"{") + line.count(b"["))


def test_a_streams_next_delta_decodes_from_its_template() -> None:
    decoder = learned(raw(text_delta("Hel", index=0)))
    for text in ['lo "world"', "\\ é \u2028 \x00", "", '_delta":"x']:
        line = raw(text_delta(text, index=0))
        u = decoder.decode(line)
        assert u == decode_frame(line)
        assert isinstance(u, Update) and u.text == text and u.raw is line
    assert decoder.hits == 4


@pytest.mark.parametrize(("body", "field", "channel"), DELTAS)
def test_every_delta_type(body: dict[str, Any], field: str, channel: tuple[Any, ...]) -> None:
    decoder = learned(raw(delta(body, index=7)))
    line = raw(delta({**body, field: "next"}, index=7))
    u = decoder.decode(line)
    assert u == decode_frame(line)
    assert isinstance(u, Update) and (u.text, u.channel) == ("next", (*channel, 7))
    assert decoder.hits == 1


def test_each_update_gets_its_own_top_level_and_delta_objects() -> None:
    decoder = learned(first := raw(text_delta("a")))
    one, two = decoder.decode(raw(text_delta("b"))), decoder.decode(raw(text_delta("c")))
    assert isinstance(one, Update) and isinstance(two, Update)
    assert one.body is not two.body and one.body["delta"] is not two.body["delta"]
    assert (one.body["delta"]["text_delta"], two.body["delta"]["text_delta"]) == ("b", "c")
    one.body["delta"]["text_delta"] = "changed"
    again = decoder.decode(first)
    assert isinstance(again, Update) and again.body["delta"]["text_delta"] == "a"


def test_the_update_a_template_was_learnt_from_does_not_share_its_objects() -> None:
    decoder = FrameDecoder()
    decoder.decode(line := raw(text_delta("a", index=1)))
    learnt = decoder.decode(line)
    assert isinstance(learnt, Update) and len(decoder) == 1
    learnt.body["delta"]["type"] = "changed"
    learnt.body["index"] = 99
    later = decoder.decode(raw(text_delta("b", index=1)))
    assert later == decode_frame(raw(text_delta("b", index=1)))


def test_lines_that_only_look_like_the_template_get_decode_frames_verdict() -> None:
    first = raw(text_delta("abc", index=0))
    prefix, suffix = split(first, "abc")
    mutants = [
        prefix + b'"\xff"' + suffix,  # not UTF-8
        prefix + b'"a\x01b"' + suffix,  # a raw control character
        prefix + b'"\\x"' + suffix,  # a bad escape
        prefix + b'"\\ud800"' + suffix,  # a lone surrogate
        prefix + b'"a","text_delta":"b"' + suffix,  # the key twice
        prefix + b'"a" "b"' + suffix,
        prefix + b'"a"' + b" " + suffix,  # whitespace: still the same object
        prefix + b'"abc' + suffix,  # unterminated
        prefix + b'"a"' + suffix.replace(b"0", b"1"),  # another index: another suffix
        prefix + b'"a"' + suffix + b"x",
        prefix + b'"a"' + suffix[:-1],
        prefix[:-1] + b'"a"' + suffix,
        prefix + b'"a"}' + suffix,
    ]
    decoder = learned(first)
    for line in mutants:
        assert outcome(decoder.decode, line) == outcome(decode_frame, line), line


@st.composite
def literals(draw: st.DrawFn) -> bytes:
    """What may sit between a template's prefix and suffix: a string literal, or not."""
    text = draw(st.text())
    kind = draw(st.sampled_from(["dumps", "ascii", "bytes", "cut", "extra"]))
    if kind == "dumps":
        return orjson.dumps(text)
    if kind == "ascii":
        return text.encode("ascii", "backslashreplace").join([b'"', b'"'])
    if kind == "bytes":
        return b'"' + draw(st.binary(max_size=12)) + b'"'
    if kind == "cut":
        return orjson.dumps(text)[: draw(st.integers(0, 3))]
    return orjson.dumps(text) + draw(st.sampled_from([b",", b" ", b"}", b'"', b'\\"']))


@settings(max_examples=400, deadline=None)
@given(st.lists(literals(), min_size=1, max_size=6))
def test_fuzz_template_lines_decode_as_decode_frame_does(middles: list[bytes]) -> None:
    first = raw(text_delta("seed", index=3))
    prefix, suffix = split(first, "seed")
    decoder = learned(first)
    for middle in middles:
        line = prefix + middle + suffix
        assert outcome(decoder.decode, line) == outcome(decode_frame, line), line


def test_a_streams_first_delta_learns_nothing() -> None:
    decoder = FrameDecoder()
    for i in range(5):  # five streams of one delta each
        decoder.decode(raw(text_delta("a", task=f"t{i}")))
    assert len(decoder) == 0 and decoder.held == 5 * SEEN_BYTES


def test_a_slot_that_is_not_the_text_is_not_learned() -> None:
    # The first `..._delta":"` is another field's; its value even equals the text.
    first = raw({"meta": {"x_delta": "a"}, **text_delta("a")})
    decoder = FrameDecoder()
    decoder.decode(first)
    decoder.decode(first)
    assert len(decoder) == 0
    for text in ["a", "b"]:
        line = raw({"meta": {"x_delta": "a"}, **text_delta(text)})
        assert decoder.decode(line) == decode_frame(line)
    assert decoder.hits == 0


def test_bounds_and_the_held_estimate() -> None:
    decoder = FrameDecoder(max_templates=3)
    lines = [raw(text_delta("a", task=f"t{i}")) for i in range(4)]
    for line in lines[:3]:
        decoder.decode(line)
        decoder.decode(line)
    assert len(decoder) == 3
    assert decoder.held == sum(cost(x) for x in lines[:3])
    decoder.decode(lines[3])
    decoder.decode(lines[3])  # full: emptied, then refilled by the streams still writing
    assert len(decoder) == 1
    assert decoder.held == cost(lines[3])
    # The same prefix with another suffix replaces its template, and its count.
    other = raw(text_delta("a", task="t3", index=5))
    decoder.decode(other)
    decoder.decode(other)
    assert len(decoder) == 1 and decoder.held == cost(other)
    # Prefixes seen once are bounded too.
    for i in range(10):
        decoder.decode(raw(text_delta("a", task=f"once{i}")))
    assert decoder.held <= cost(other) + 3 * SEEN_BYTES
    big = FrameDecoder()
    for line in [
        raw(text_delta("x" * 600)),  # past max_line_bytes
        raw({**text_delta("x"), "extra": {str(i): i for i in range(30)}}),  # keys
        raw({**text_delta("x"), "extra": [[[[[[[[[]]]]]]]]]}),  # containers
    ]:
        big.decode(line)
        big.decode(line)
    assert len(big) == 0 and big.held == 0


def update_of(ptm: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "delta",
        "parent_task_message": ptm,
        "delta": {"type": "text", "text_delta": "a"},
    }


@pytest.mark.parametrize("shape", ["agentex", "bare", "empty lists"])
def test_the_estimate_covers_what_a_template_holds(shape: str) -> None:
    def line(i: int) -> bytes:
        if shape == "agentex":
            return raw(text_delta("Hello", task=f"task-{i:09d}", msg=f"msg-{i:09d}", index=0))
        if shape == "bare":
            ptm = {"id": f"m{i}", "task_id": f"t{i}", "content": None}
            return raw(update_of(ptm))
        # Small line, many objects: as many containers as a template may have.
        return raw({**text_delta("a", task=f"t{i}"), "x": [[], []]})

    lines = [line(i) for i in range(1000)]
    decoder = FrameDecoder()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for x in lines:
            decoder.decode(x)
            decoder.decode(x)
        gc.collect()
        measured = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(decoder) == len(lines)
    # Not below what it holds, and not wildly above.
    assert measured <= decoder.held <= 2.5 * measured
