"""The reassembler: streams put back together from records, and the order checks."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sidecar_client.reassemble import (
    ContentConflict,
    Reassembler,
    ReassemblyError,
    SeqDuplicate,
    SeqGap,
    Stream,
    Violation,
    channel_label,
    reassemble,
)
from tests.helpers import done, full, parent, start, text_delta


def hdr(kind: str, seq: int, reason: str | None = None, *, msg: str = "m") -> dict[str, bytes]:
    out = {"type": kind.encode(), "message_id": msg.encode(), "seq": str(seq).encode()}
    if reason is not None:
        out["terminal_reason"] = reason.encode()
    return out


def delta(task: str, msg: str, d: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "delta", "parent_task_message": parent(task, msg), "delta": d, **extra}


def feed_all(
    r: Reassembler, records: list[tuple[dict[str, Any], dict[str, bytes]]]
) -> list[Stream]:
    return [s for v, h in records if (s := r.feed(v, h)) is not None]


def kinds(r: Reassembler) -> list[str]:
    return [v.kind for v in r.violations]


def test_text_stream() -> None:
    r = Reassembler()
    out = feed_all(
        r,
        [
            (start("t", "m"), hdr("start", 0)),
            (text_delta("t", "m", "hel"), hdr("delta", 1)),
            (text_delta("t", "m", None), hdr("delta", 2)),  # null counts as ""
            (text_delta("t", "m", "lo"), hdr("delta", 3)),
            (done("t", "m"), hdr("done", 4, "client")),
        ],
    )
    assert len(out) == 1
    s = out[0]
    assert (s.task_id, s.message_id, s.terminal, s.terminal_reason) == ("t", "m", "done", "client")
    assert (s.records, s.deltas, s.channels) == (5, 3, {"text": "hello"})
    assert r.violations == [] and r.open == {} and r.finished == 1
    # The content, exactly as agentex's DeltaAccumulator builds it (TextContent dumped).
    assert (
        s.to_json()["content"]
        == s.content
        == {
            "author": "agent",
            "content": "hello",
            "attachments": None,
            "format": "plain",
            "style": "static",
            "type": "text",
        }
    )


def test_channels_are_kept_apart() -> None:
    r = Reassembler()
    t, m = "t", "m"
    records = [
        delta(
            t,
            m,
            {"type": "tool_request", "tool_call_id": "c1", "name": "f", "arguments_delta": '{"a"'},
        ),
        delta(
            t,
            m,
            {"type": "tool_request", "tool_call_id": "c2", "name": "g", "arguments_delta": "{}"},
        ),
        delta(
            t,
            m,
            {"type": "tool_request", "tool_call_id": "c1", "name": "f", "arguments_delta": ":1}"},
        ),
        delta(t, m, {"type": "reasoning_summary", "summary_index": 0, "summary_delta": "think"}),
        delta(t, m, {"type": "reasoning_content", "content_index": 1, "content_delta": "deep"}),
        delta(
            t,
            m,
            {"type": "tool_response", "tool_call_id": "c1", "name": "f", "content_delta": "ok"},
        ),
        delta(t, m, {"type": "data", "data_delta": "[1"}),
        delta(t, m, {"type": "text", "text_delta": "a"}, index=2),
        delta(t, m, {"type": "data", "data_delta": "]"}),
    ]
    fed = [(v, hdr("delta", i)) for i, v in enumerate(records)]
    fed.append((full(t, m, "final"), hdr("full", len(records), "client")))
    (s,) = feed_all(r, fed)
    assert s.channels == {
        "tool_request:c1:f": '{"a":1}',
        "tool_request:c2:g": "{}",
        "reasoning_summary:0": "think",
        "reasoning_content:1": "deep",
        "tool_response:c1:f": "ok",
        "data": "[1]",
        "text#2": "a",
    }
    assert s.terminal == "full"
    assert s.to_json()["content"] == full(t, m, "final")["content"]
    assert r.violations == []


def test_channel_label() -> None:
    assert channel_label({"type": "text", "text_delta": "x"}) == "text"
    assert channel_label({"type": "reasoning_summary", "summary_index": 3}, 0) == (
        "reasoning_summary:3#0"
    )


def test_values_as_bytes_headers_as_str_and_key_checked() -> None:
    r = Reassembler()
    h: dict[str, Any] = {"type": "done", "message_id": "m", "seq": "0", "terminal_reason": "idle"}
    s = r.feed(orjson.dumps(done("t", "m")), h, key=b"t", partition=1, offset=7)
    assert s is not None and s.partition == 1 and s.terminal_reason == "idle"
    assert r.violations == []


def test_record_after_terminal_and_duplicate_terminal() -> None:
    r = Reassembler()
    feed_all(r, [(start("t", "m"), hdr("start", 0)), (done("t", "m"), hdr("done", 1, "client"))])
    assert r.feed(text_delta("t", "m", "late"), hdr("delta", 2)) is None
    assert r.feed(done("t", "m"), hdr("done", 3, "disconnect")) is None
    assert kinds(r) == ["record_after_terminal", "duplicate_terminal"]
    assert r.finished == 1


def test_seq_gaps_and_duplicates_are_reported_once_each() -> None:
    r = Reassembler()
    feed_all(
        r,
        [
            (start("t", "m"), hdr("start", 0)),
            (text_delta("t", "m", "a"), hdr("delta", 2)),  # 1 lost
            (text_delta("t", "m", "b"), hdr("delta", 3)),  # in step again
            (text_delta("t", "m", "b"), hdr("delta", 3)),  # duplicated
            (done("t", "m"), hdr("done", 4, "client")),
        ],
    )
    assert kinds(r) == ["seq_gap", "seq_duplicate"]
    assert "seq 2 where 1 was due" in str(r.violations[0])
    assert "seq 3 where 4 was due" in str(r.violations[1])


def test_missing_head_is_a_gap_from_the_start_but_not_when_joining_late() -> None:
    records = [(text_delta("t", "m", "b"), hdr("delta", 5)), (done("t", "m"), hdr("done", 6, "x"))]
    strict = Reassembler()
    feed_all(strict, records)
    assert kinds(strict) == ["seq_gap"]
    assert "retention" in strict.violations[0].detail
    late = Reassembler(from_start=False)
    (s,) = feed_all(late, records)
    assert late.violations == [] and s.partial and s.to_json()["partial"] is True


def test_start_not_first_task_split_and_header_mismatch() -> None:
    r = Reassembler()
    r.feed(text_delta("t", "m", "a"), hdr("delta", 0), partition=0, offset=0)
    r.feed(start("t", "m"), hdr("start", 1), partition=0, offset=1)
    r.feed(start("t", "m2"), hdr("start", 0, msg="m2"), partition=2, offset=0)
    r.feed(done("t", "m"), hdr("done", 2), partition=0, offset=2)  # no terminal_reason
    r.feed(text_delta("t", "m3", "x"), hdr("done", 0, msg="other", reason="client"))
    assert kinds(r) == [
        "start_not_first",
        "task_split",
        "header_mismatch",
        "header_mismatch",
    ]
    assert str(r.violations[1]).startswith("task_split: t/m2 at 2@0")
    assert "message_id header 'other'" in r.violations[3].detail


def test_bad_records() -> None:
    seen: list[Violation] = []
    r = Reassembler(on_violation=seen.append)
    assert r.feed(b"not json", hdr("delta", 0), key=b"t") is None
    assert r.feed({"type": "delta"}, hdr("delta", 0)) is None
    r.feed(text_delta("t", "m", "x"), {"type": b"delta", "message_id": b"m"})  # no seq
    assert [v.kind for v in seen] == ["bad_record", "bad_record", "header_mismatch"]
    assert seen[0].task_id == "t" and seen[0].message_id == "m"
    assert seen == r.violations


def test_keep_text_off_checks_order_only() -> None:
    r = Reassembler(keep_text=False)
    feed_all(r, [(text_delta("t", "m", "a"), hdr("delta", 0))])
    assert r.open[("t", "m")].channels == {} and r.open[("t", "m")].deltas == 1


@given(
    texts=st.lists(st.lists(st.text(max_size=4), max_size=8), min_size=1, max_size=6),
    seed=st.integers(0, 2**32),
)
def test_any_interleaving_of_ordered_streams_passes(texts: list[list[str]], seed: int) -> None:
    """What the product promises (each stream in order, streams interleaved anyhow) is
    reassembled exactly and never flagged."""
    queues = []
    for i, pieces in enumerate(texts):
        task, msg = f"t{i % 2}", f"m{i}"
        recs = [(start(task, msg), hdr("start", 0, msg=msg))]
        recs += [
            (text_delta(task, msg, p), hdr("delta", j + 1, msg=msg)) for j, p in enumerate(pieces)
        ]
        recs.append((done(task, msg), hdr("done", len(pieces) + 1, "client", msg=msg)))
        queues.append(recs)
    rng = random.Random(seed)
    merged = []
    while queues:
        q = rng.choice(queues)
        merged.append(q.pop(0))
        if not q:
            queues.remove(q)
    r = Reassembler()
    out = {s.message_id: s.channels.get("text", "") for s in feed_all(r, merged)}
    assert r.violations == []
    assert out == {f"m{i}": "".join(p) for i, p in enumerate(texts)}


def on(instance: str, h: dict[str, bytes]) -> dict[str, bytes]:
    return {**h, "sidecar_instance": instance.encode()}


def test_a_stream_resumed_under_a_new_sidecar_instance_is_no_gap() -> None:
    # seq counts per (stream, sidecar instance): a restarted sidecar reopens the stream
    # implicitly and counts from 0 again (PROTOCOL §5).
    r = Reassembler()
    (s,) = feed_all(
        r,
        [
            (start("t", "m"), on("A", hdr("start", 0))),
            (text_delta("t", "m", "be"), on("A", hdr("delta", 1))),
            (text_delta("t", "m", "fore "), on("A", hdr("delta", 2))),
            (text_delta("t", "m", "after"), on("B", hdr("delta", 0))),
            (done("t", "m"), on("B", hdr("done", 1, "client"))),
        ],
    )
    assert r.violations == []
    assert (s.resumed, s.instance, s.channels) == (1, "B", {"text": "before after"})
    assert s.content["content"] == "before after"
    assert s.to_json()["resumed"] == 1


def test_strict_mode_raises_typed_errors() -> None:
    class Rec:
        def __init__(self, instance: str, seq: int, offset: int) -> None:
            self.key, self.partition, self.offset = b"t", 0, offset
            self.value = orjson.dumps(text_delta("t", "m", "x"))
            self.headers = on(instance, hdr("delta", seq))

    def run(*seqs: tuple[str, int]) -> None:
        list(reassemble([Rec(i, n, offset) for offset, (i, n) in enumerate(seqs)]))

    run(("A", 0), ("A", 1), ("B", 0), ("B", 1))  # a restart: fine
    with pytest.raises(SeqGap, match="seq 2 where 1 was due") as gap:
        run(("A", 0), ("A", 2))
    assert gap.value.violation.offset == 1
    with pytest.raises(SeqDuplicate, match="seq 1 where 2 was due") as dup:
        run(("A", 0), ("A", 1), ("A", 1))
    assert dup.value.violation.kind == "seq_duplicate"
    with pytest.raises(SeqGap):  # a stream's first record must be seq 0, from the start
        run(("B", 1))
    assert isinstance(gap.value, ReassemblyError) and isinstance(dup.value, ReassemblyError)
    # Bare events (what subscribe yields): order only, no seq; content is still checked.
    mixed = [text_delta("t", "m", "a"), delta("t", "m", {"type": "data", "data_delta": "{}"})]
    with pytest.raises(ContentConflict, match="Delta type mismatch: text != data"):
        list(reassemble([*mixed, done("t", "m")]))
