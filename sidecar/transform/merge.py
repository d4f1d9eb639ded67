"""Merging a stream's pending deltas into records (PROTOCOL §4).

Only consecutive deltas of one channel (delta type, channel fields, update `index`)
merge; different channels are never reordered. A merged record's value is the first
delta's object with its text field replaced by the concatenation; a lone delta goes out
as the bytes the agent sent.
"""

from __future__ import annotations

from typing import Any

import orjson

from sidecar.model import AckToken, Record, Update


class Pending:
    """One delta waiting in a stream's window, with the ack it owes (if any)."""

    __slots__ = ("ack", "update")

    def __init__(self, update: Update, ack: AckToken | None) -> None:
        self.update = update
        self.ack = ack


def merged_value(run: list[Pending]) -> bytes:
    first = run[0].update
    if len(run) == 1:
        return first.raw
    assert first.text_field is not None
    body: dict[str, Any] = dict(first.body)  # shallow copies: the input stays untouched
    delta = dict(body["delta"])
    delta[first.text_field] = "".join(p.update.text for p in run)
    body["delta"] = delta
    return orjson.dumps(body)


def merge_runs(pending: list[Pending]) -> list[list[Pending]]:
    """Split pending deltas into runs of consecutive same-channel deltas, in order."""
    runs: list[list[Pending]] = []
    channel: object = None
    for p in pending:
        if runs and p.update.channel == channel:
            runs[-1].append(p)
        else:
            runs.append([p])
            channel = p.update.channel
    return runs


def delta_record(run: list[Pending], stream_seq: int) -> Record:
    first = run[0].update
    return Record(
        task_id=first.task_id,
        message_id=first.message_id,
        kind="delta",
        value=merged_value(run),
        stream_seq=stream_seq,
        acks=[p.ack for p in run if p.ack is not None],
        deltas=len(run),
    )
