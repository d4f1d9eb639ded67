"""Merging a stream's pending deltas into records (PROTOCOL §4).

Only consecutive deltas of one channel (delta type, channel fields, update `index`, as
`Update.channel`; None merges with nothing) merge; different channels are never
reordered (A A B A gives three records: AA, B, A). A merged record's value is the first
delta's object with its text field replaced by the concatenation; a lone delta goes out
as the bytes the agent sent, never re-serialized.
"""

from __future__ import annotations

from typing import Any

import orjson

from sidecar.model import AckToken, Record, ReplyTarget, StreamKey, Update

# One delta waiting in a stream's window, with the ack it owes (if any). A plain tuple,
# not an object: one is made for every coalesced delta.
Pending = tuple[Update, AckToken | None]


def runs(pending: list[Pending]) -> list[list[Pending]]:
    """The pending deltas as runs of consecutive same-channel deltas, in order. One pass:
    at an LLM's pace a window is usually one run, returned as the list itself."""
    out: list[list[Pending]] = []
    start = 0
    channel = pending[0][0].channel if pending else None
    for i in range(1, len(pending)):
        previous, channel = channel, pending[i][0].channel
        # A delta without a channel (a delta type the sidecar does not know, or a null
        # delta: PROTOCOL §2.1) merges with nothing, so it is always a run of its own.
        if channel is None or channel != previous:
            out.append(pending[start:i])
            start = i
    if pending:
        out.append(pending[start:] if start else pending)
    return out


def merged_value(run: list[Pending]) -> bytes:
    """The record value of one run (never mutates the updates' bodies)."""
    first = run[0][0]
    if len(run) == 1:
        return first.raw
    text_field = first.text_field
    assert text_field is not None  # every decoded delta names its text field
    body: dict[str, Any] = dict(first.body)  # shallow copies: the input stays untouched
    delta = dict(body["delta"])
    delta[text_field] = "".join([u.text for u, _ in run])
    body["delta"] = delta
    return exact(orjson.dumps(body))


def exact(value: bytes) -> bytes:
    """`value` in a bytes object of its own size: orjson's result keeps the 4 KiB buffer
    it was written into, and a held record must cost what it is."""
    return memoryview(value).tobytes()


def delta_record(
    run: list[Pending],
    stream_seq: int,
    key: StreamKey | None = None,
    writer_uid: int = 0,
    writer: ReplyTarget | None = None,
    line_seq: int = 0,
) -> Record:
    """One delta record carrying every line of the run, and every ack they owe. `key`
    (the stream's, shared) saves the record its own copies of the ids; the writer fields
    are the stream's (see `Record`)."""
    task_id, message_id = key if key is not None else run[0][0].key
    return Record(
        task_id,
        message_id,
        "delta",
        merged_value(run),
        stream_seq,
        None,
        [a for _, a in run if a is not None],
        len(run),
        None,
        writer_uid,
        writer,
        line_seq,
    )
