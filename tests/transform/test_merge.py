"""Merging runs of pending deltas (PROTOCOL §4), without the table."""

from __future__ import annotations

import copy

import orjson

from sidecar.model import AckToken
from sidecar.transform.merge import Pending, delta_record, merged_value, runs
from tests.transform.support import Owner, delta, update


def pend(text: str | None, ack: int | None = None, dtype: str = "text") -> Pending:
    token = AckToken(Owner(), ack) if ack is not None else None
    return (update(delta("t", "m", text, dtype=dtype)), token)


def test_only_consecutive_same_channel_deltas_form_a_run() -> None:
    a1, a2, b, a3 = pend("1"), pend("2"), pend("x", dtype="data"), pend("3")
    assert [[u.text for u, _ in r] for r in runs([a1, a2, b, a3])] == [
        ["1", "2"],
        ["x"],
        ["3"],
    ]
    assert list(runs([])) == []


def test_a_delta_without_a_channel_is_a_run_of_its_own() -> None:
    # Unknown delta types and null deltas (PROTOCOL §2.1) have no channel: never merged,
    # never reordered, even when two of them are the same unknown type.
    def odd(n: int) -> Pending:
        obj = delta("t", "m", None)
        obj["delta"] = {"type": "future", "n": n}
        return (update(obj), None)

    a1, u1, u2, a2, a3 = pend("1"), odd(1), odd(2), pend("2"), pend("3")
    assert [[u.body["delta"].get("n") for u, _ in r] for r in runs([a1, u1, u2, a2, a3])] == [
        [None],
        [1],
        [2],
        [None, None],
    ]
    assert merged_value([u1]) is u1[0].raw


def test_a_lone_delta_is_its_bytes_as_received() -> None:
    obj = delta("t", "m", "hi", index=None)
    raw = orjson.dumps(obj, option=orjson.OPT_INDENT_2)  # not what orjson would write
    p: Pending = (update(obj, raw=raw), None)
    assert merged_value([p]) is raw


def test_merged_value_is_the_first_object_with_the_texts_joined() -> None:
    first = delta(
        "t", "m", None, dtype="tool_request", fields={"tool_call_id": "c", "name": "f", "x": 1}
    )
    first["custom"] = {"keep": [1, 2]}
    second = delta("t", "m", "{}", dtype="tool_request", fields={"tool_call_id": "c", "name": "f"})
    second["custom"] = "ignored: only the first object's fields are kept"
    before = copy.deepcopy(first)
    run: list[Pending] = [(update(first), None), (update(second), None)]
    value = orjson.loads(merged_value(run))
    assert value == {**first, "delta": {**first["delta"], "arguments_delta": "{}"}}
    assert first == before  # the input is never mutated


def test_delta_record_carries_every_ack_and_the_line_count() -> None:
    run = [pend("a", ack=1), pend("b"), pend("c", ack=3)]
    record = delta_record(run, 7)
    assert (record.kind, record.stream_seq, record.deltas) == ("delta", 7, 3)
    assert [a.seq for a in record.acks] == [1, 3]
    assert orjson.loads(record.value)["delta"]["text_delta"] == "abc"
    assert (record.task_id, record.message_id, record.terminal_reason) == ("t", "m", None)
