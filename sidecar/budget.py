"""One memory budget: every byte the sidecar holds on behalf of its clients, by kind.

Kinds, and what bounds each (README "The memory budget"):

- `pending_records`: records accepted and not yet acknowledged by Kafka (the sink's
  `pending_bytes`: each record's true footprint). Bounded by --max-pending-bytes.
- `partial_lines`: the unfinished lines buffered by the connections' framers (each at
  most --max-frame-bytes). Charged to --max-pending-bytes together with pending records:
  past it socket reads pause (backpressure, `SinkBase`), and resume below three quarters.
- `open_streams`: each open stream's state (its object, ids, last parent, map entries),
  estimated when it opens, bounded by --max-open-stream-bytes (past it reads pause
  until streams end), and the deltas in its coalescing window (at most a flush
  interval's worth, estimated when asked). The terminals they
  will need respect --max-pending-bytes: streams ended while pending records leave no
  room (a disconnect, the idle timeout) wait, closed, before their flush and
  synthesized `done` are produced (`StreamTable` "ending").
- `closed_streams`: the table of recently closed streams (a fixed-size digest per
  stream); bounded by --max-closed-stream-bytes (oldest forgotten early past it).
- `reply_buffers`: replies written and not yet read by the clients; bounded per
  connection by --max-reply-bytes (read at scrape time).
- `partition_cache`: the Kafka sink's task -> partition cache; a fixed 4 MiB bound.
- `decode_templates`: the decoder's templates of delta lines
  (`sidecar_client.protocol.templates`); at most 2,048 of lines up to 512 bytes, about
  5 MiB of agentex deltas (8 MiB at the estimate's worst).

Plain integers, no asyncio: the data path adds and subtracts, /metrics reads.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from collections.abc import Callable

log = logging.getLogger("sidecar.budget")

KINDS = (
    "pending_records",
    "open_streams",
    "partial_lines",
    "closed_streams",
    "reply_buffers",
    "partition_cache",
    "decode_templates",
)

# An open stream's own state besides its ids and its last parent_task_message: the
# Stream object and its floats, the key tuple and the two ids' string headers, its entry
# in the open map (an OrderedDict: a dict slot and a list node) and in its owner's set.
# Measured with tracemalloc (tests/test_budget.py keeps it honest).
OPEN_STREAM_BYTES = 832
# One remembered closed stream: its 128-bit digest (an int of 44 bytes), its closing time
# (a float) and its entry in an OrderedDict (slot, index and list node, with the table's
# spare room); measured at about 150-175 bytes with tracemalloc, charged as 200.
CLOSED_ENTRY_BYTES = 200
# The last parent_task_message is held as Python objects, which for the usual object of
# a few strings cost about twice its JSON (its ids are the key's strings, counted once).
PARENT_FACTOR = 2


# A delta waiting in a window: its line's bytes, the decoded line (the update, its body's
# dicts and strings: about 1,150 bytes for an agentex delta plus about its JSON again) and
# the window's tuple. An estimate: deeply nested unknown fields cost more per byte.
WINDOW_ENTRY_BYTES = 1200


def window_entry_cost(line_len: int) -> int:
    return WINDOW_ENTRY_BYTES + 2 * line_len


def open_stream_cost(parent_json_len: int, ids_len: int) -> int:
    """An open stream's estimated state: the fixed part, and its last parent (whose JSON
    holds the ids, which the stream shares with its key)."""
    return OPEN_STREAM_BYTES + PARENT_FACTOR * parent_json_len - ids_len


class Budget:
    """The held bytes by kind. Backpressure compares pending records plus partial lines
    with --max-pending-bytes (`SinkBase`)."""

    __slots__ = (
        "closed_streams",
        "decode_templates",
        "max_open_streams",
        "open_streams",
        "partial_lines",
        "partition_cache",
        "pending_records",
        "pressure",
        "reply_buffers",
        "stashed",
        "windows",
    )

    def __init__(self) -> None:
        self.open_streams = 0
        # --max-open-stream-bytes: past it reads pause until streams end (the idle
        # timeout, their terminals); `pressure` re-checks (the server wires the sink's).
        self.max_open_streams = 1 << 62
        self.pressure: Callable[[], None] = lambda: None
        self.partial_lines = 0
        # Bytes read past a line that a connection finished under backpressure, held until
        # reads resume (at most one read per connection). Reported with partial lines but
        # not charged: they can only go once reads resume, so charging them would hold
        # the pause forever.
        self.stashed = 0
        self.closed_streams = 0
        # Kinds whose owners keep the count themselves, read when asked (the server wires
        # them): the sink's pending bytes, the transports' write buffers, the cache.
        self.pending_records: Callable[[], int] = lambda: 0
        self.reply_buffers: Callable[[], int] = lambda: 0
        # The deltas waiting in coalescing windows (part of open_streams): transient, at
        # most a flush interval's worth, so estimated when asked rather than per delta.
        self.windows: Callable[[], int] = lambda: 0
        self.partition_cache: Callable[[], int] = lambda: 0
        self.decode_templates: Callable[[], int] = lambda: 0

    def held(self) -> dict[str, int]:
        """Every kind's bytes now (scrape time: some kinds are summed over connections)."""
        return {
            "pending_records": self.pending_records(),
            "open_streams": self.open_streams + self.windows(),
            "partial_lines": self.partial_lines + self.stashed,
            "closed_streams": self.closed_streams,
            "reply_buffers": self.reply_buffers(),
            "partition_cache": self.partition_cache(),
            "decode_templates": self.decode_templates(),
        }


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None where there is none (musl, macOS)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        fn = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return fn


def process_rss() -> int:
    """This process's resident set size in bytes (Linux; 0 where /proc is missing)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class Trimmer:
    """Gives freed heap back to the kernel after a flood.

    glibc keeps freed memory in its heap (and only returns the top of it on its own), so
    after a flood of records or lines the process would stay at its peak RSS long after
    every byte was delivered. Checked about once a second; `malloc_trim(0)` returns the
    free pages (a few ms) when either
    - held bytes have fallen to a quarter of their high point since the last trim, and by
      at least `min_drop` (a flood of records is over), or
    - RSS has grown by at least twice `min_drop` since the last trim and held bytes are
      under a quarter of that growth (a flood of lines that held little, such as invalid
      ones, left freed heap behind). A trim that frees nothing raises the floor, so it is
      not repeated until RSS grows that much again, or
    - held bytes are down to an eighth of `min_drop` after a trim made with more held:
      the flood's tail. A trim at a quarter of the high point can come while a few MiB
      are still held (the check runs once a second), and what they free then is no
      `min_drop` drop of its own.
    """

    def __init__(
        self,
        budget: Budget,
        *,
        min_drop: int = 8 << 20,
        rss: Callable[[], int] = process_rss,
    ) -> None:
        self.budget = budget
        self.min_drop = min_drop
        self.high = 0
        self.trims = 0
        self.trimmed_at = 0  # held bytes at the last trim
        self._rss = rss
        self.floor = rss()
        self._trim = _malloc_trim()

    def check(self) -> bool:
        """True if it trimmed now."""
        held = sum(self.budget.held().values())
        if held > self.high:
            self.high = held
        rss = self._rss()
        grown = rss - self.floor
        drained = self.high - held >= self.min_drop and held * 4 <= self.high
        leftover = grown >= 2 * self.min_drop and held * 4 <= grown
        tail = held <= self.min_drop // 8 < self.trimmed_at
        if not (drained or leftover or tail) or self._trim is None:
            return False
        self._trim(0)
        self.trims += 1
        self.high = self.trimmed_at = held
        self.floor = self._rss()
        return True
