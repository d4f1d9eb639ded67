"""LineFramer: numbering, over-long lines, partial lines, and fuzzed chunking (PROTOCOL §2)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar_client.protocol import Event, FrameError, Line, LineFramer, Oversize, decode_frame
from tests.protocol.agentex import done, raw, start, text_delta


def feed_all(framer: LineFramer, *chunks: bytes) -> list[Event]:
    events: list[Event] = []
    for chunk in chunks:
        events += framer.feed(chunk)
    return events


def test_lines_are_numbered_across_chunks() -> None:
    f = LineFramer(100)
    events = feed_all(f, b'{"a":1}\n{"b"', b":2}\n\n", b"x\ny")
    assert events == [Line(1, b'{"a":1}'), Line(2, b'{"b":2}'), Line(3, b""), Line(4, b"x")]
    assert f.close() is True  # "y" was half a line: discarded
    assert f.feed(b"z\n") == [Line(5, b"z")]  # numbering carries on after close


def test_empty_lines_and_carriage_returns_are_kept_as_lines() -> None:
    f = LineFramer(10)
    assert f.feed(b"\n\na\r\n") == [Line(1, b""), Line(2, b""), Line(3, b"a\r")]
    assert f.close() is False


def test_a_line_is_bytes_even_when_assembled_from_chunks() -> None:
    f = LineFramer(100)
    events = feed_all(f, b"ab", b"cd", b"e\nf")
    assert events == [Line(1, b"abcde")]
    assert isinstance(events[0], Line)
    assert type(events[0].data) is bytes
    assert f.buffered == 1


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        # Exactly at the limit is fine; one byte over is not.
        ([b"1234\n12345\n"], [Line(1, b"1234"), Oversize(2, 5)]),
        ([b"12", b"34", b"\n"], [Line(1, b"1234")]),
        ([b"1234", b"\n"], [Line(1, b"1234")]),
        # Reported as soon as the held tail passes the limit, with what was seen so far.
        ([b"123", b"45"], [Oversize(1, 5)]),
        ([b"12345"], [Oversize(1, 5)]),
        # A held tail finished by a chunk that takes it over the limit.
        ([b"123", b"456\nok\n"], [Oversize(1, 6), Line(2, b"ok")]),
        # Skipping goes on across chunks, up to the newline, then numbering resumes.
        ([b"123456", b"789", b"0\nok\n"], [Oversize(1, 6), Line(2, b"ok")]),
        ([b"123456", b"\n", b"\n"], [Oversize(1, 6), Line(2, b"")]),
    ],
)
def test_oversize_lines(chunks: list[bytes], expected: list[Event]) -> None:
    assert feed_all(LineFramer(4), *chunks) == expected


def test_oversize_line_is_reported_once_and_never_held() -> None:
    f = LineFramer(1000)
    events = f.feed(b"ok\n")
    chunk = b"x" * 65536
    for _ in range(160):  # a 10 MB line
        events += f.feed(chunk)
        assert f.buffered <= 1000
    assert f.buffered == 0  # nothing of it is held once it is known to be too long
    events += f.feed(b"tail\nnext\n")
    assert events == [Line(1, b"ok"), Oversize(2, 65536), Line(3, b"next")]


def test_close_reports_a_partial_line_only() -> None:
    f = LineFramer(4)
    assert f.close() is False
    f.feed(b"ab")
    assert f.close() is True
    assert f.buffered == 0
    assert f.close() is False
    assert f.feed(b"123456") == [Oversize(1, 6)]
    assert f.close() is True  # cut short while being skipped
    assert f.feed(b"ok\n") == [Line(2, b"ok")]  # not mistaken for the skipped line's end


def test_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_frame_bytes"):
        LineFramer(0)


# -- fuzzing ------------------------------------------------------------------------------


def reference(data: bytes, limit: int) -> list[tuple[str, int, bytes | None]]:
    """What any chunking must produce, from a plain split (size_so_far aside)."""
    *lines, tail = data.split(b"\n")
    out: list[tuple[str, int, bytes | None]] = []
    for seq, line in enumerate(lines, 1):
        out.append(("line", seq, line) if len(line) <= limit else ("oversize", seq, None))
    if len(tail) > limit:
        out.append(("oversize", len(lines) + 1, None))
    return out


def shape(events: list[Event]) -> list[tuple[str, int, bytes | None]]:
    return [
        ("line", e.seq, e.data) if isinstance(e, Line) else ("oversize", e.seq, None)
        for e in events
    ]


VALID_LINES = [raw(start()), raw(text_delta("hi", index=0)), raw(done()), b'{"type":"hello"}']
pieces = st.one_of(
    st.binary(max_size=30),
    st.just(b"\n"),
    st.sampled_from(VALID_LINES).map(lambda line: line + b"\n"),
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(pieces, max_size=20).map(b"".join),
    st.lists(st.integers(0, 60), max_size=30),
    st.integers(1, 120),
)
def test_fuzz_any_chunking_gives_the_same_events(data: bytes, cuts: list[int], limit: int) -> None:
    expected = reference(data, limit)
    whole = LineFramer(limit)
    whole_events = whole.feed(data)
    assert shape(whole_events) == expected

    chunked = LineFramer(limit)
    events: list[Event] = []
    pos = 0
    for n in [*cuts, len(data)]:
        events += chunked.feed(data[pos : pos + n])
        assert chunked.buffered <= limit
        pos += n
    assert shape(events) == expected
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    for e in events:
        if isinstance(e, Oversize):
            assert e.size_so_far > limit
    assert chunked.close() == whole.close() == (data.rsplit(b"\n", 1)[-1] != b"")

    codes = set()
    for e in events:
        if isinstance(e, Line):
            assert type(e.data) is bytes
            try:
                decode_frame(e.data)
            except FrameError as exc:  # the only exception decoding may raise
                codes.add(exc.code)
    assert codes <= {"invalid_json", "invalid_frame"}
