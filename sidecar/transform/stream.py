"""One open stream's state: its record counter, its coalescing window, and what a
synthesized terminal needs."""

from __future__ import annotations

from typing import Any

from sidecar.model import ReplyTarget, StreamKey
from sidecar.transform.merge import Pending


class Stream:
    """Plain state, mutated only by the StreamTable.

    Invariant: `due` (the end of the coalescing window, in the table's flush-tick heap) is
    set exactly while `pending` is non-empty, so a stream with nothing pending holds no
    timer, no task, nothing the event loop would wake for.
    """

    __slots__ = (
        "due",
        "held",
        "index",
        "key",
        "last_active",
        "last_flush",
        "last_seq",
        "next_seq",
        "owner",
        "parent",
        "pending",
        "pending_chars",
        "uid",
    )

    def __init__(self, key: StreamKey, owner: ReplyTarget, uid: int, now: float) -> None:
        self.key = key
        self.owner = owner  # opaque: the connection that sent the stream's last frame
        self.uid = uid  # the peer uid that owns it: ownership never leaves this uid
        self.last_seq = 0  # the owner's line number of the stream's last frame
        self.next_seq = 0  # the next record's `seq` header
        self.pending: list[Pending] = []  # (update, ack) in arrival order
        self.pending_chars = 0
        # When deltas last went out; None until the first delta (which goes out at once).
        self.last_flush: float | None = None
        self.due: float | None = None  # when the window's pending deltas are flushed
        self.parent: Any = None  # the last parent_task_message, for a synthesized done
        self.index: Any = None  # the last update `index`, likewise
        self.last_active = now
        self.held = 0  # bytes counted in the memory budget while open (sidecar.budget)
