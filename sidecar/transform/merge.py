"""Merging a stream's pending deltas into records (PROTOCOL §4).

Only consecutive deltas of one channel (delta type, channel fields, update `index`, as
`Update.channel`; None merges with nothing) merge; different channels are never
reordered (A A B A gives three records: AA, B, A). A merged record's value is the first
delta's object with its text field replaced by the concatenation; a lone delta goes out
as the bytes the agent sent, never re-serialized.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from sidecar.model import AckToken, Record, StreamKey, Update


class Pending:
    """One delta waiting in a stream's window, with the ack it owes (if any)."""

    __slots__ = ("ack", "update")

    def __init__(self, update: Update, ack: AckToken | None) -> None:
        self.update = update
        self.ack = ack


def runs(pending: list[Pending]) -> Iterator[list[Pending]]:
    """Yield the pending deltas as runs of consecutive same-channel deltas, in order."""
    run: list[Pending] = []
    channel: object = None
    for p in pending:
        # A delta without a channel (a delta type the sidecar does not know, or a null
        # delta: PROTOCOL §2.1) merges with nothing, so it is always a run of its own.
        if run and (p.update.channel is None or p.update.channel != channel):
            yield run
            run = []
        if not run:
            channel = p.update.channel
        run.append(p)
    if run:
        yield run


def merged_value(run: list[Pending]) -> bytes:
    """The record value of one run (never mutates the updates' bodies)."""
    first = run[0].update
    if len(run) == 1:
        return first.raw
    text_field = first.text_field
    assert text_field is not None  # every decoded delta names its text field
    body: dict[str, Any] = dict(first.body)  # shallow copies: the input stays untouched
    delta = dict(body["delta"])
    delta[text_field] = "".join([p.update.text for p in run])
    body["delta"] = delta
    return exact(orjson.dumps(body))


def exact(value: bytes) -> bytes:
    """`value` in a bytes object of its own size: orjson's result keeps the 4 KiB buffer
    it was written into, and a held record must cost what it is."""
    return memoryview(value).tobytes()


def delta_record(run: list[Pending], stream_seq: int, key: StreamKey | None = None) -> Record:
    """One delta record carrying every line of the run, and every ack they owe. `key`
    (the stream's, shared) saves the record its own copies of the ids."""
    first = run[0].update
    task_id, message_id = key if key is not None else first.key
    return Record(
        task_id=task_id,
        message_id=message_id,
        kind="delta",
        value=merged_value(run),
        stream_seq=stream_seq,
        acks=[p.ack for p in run if p.ack is not None],
        deltas=len(run),
    )
