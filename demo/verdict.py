"""The verdict, from what Kafka holds (never from the sidecar's own counters).

`ReadBack` consumes the demo's topic while the agents stream (the live view's "records"
column) and keeps every record; `judge` then checks each stream against what its agent
wrote: records in order (`seq` 0, 1, 2...), the delta text exactly as written, exactly
one terminal and it last; and measures first-delta latency from the agent's write to the
CreateTime of the record that carries the first delta.
"""

from __future__ import annotations

import asyncio
import math
from collections import defaultdict
from dataclasses import dataclass, field

import orjson

from demo.agents import TEXT_FIELD, StreamRow
from sidecar.sink.kafka import ConsumedRecord, TopicReader

TERMINALS = ("done", "full")


class ReadBack:
    """Every record of the topic, grouped by stream, counted into the rows as it comes."""

    def __init__(self, rows: list[StreamRow]) -> None:
        self.rows = {(r.task, r.message): r for r in rows}
        self.records: dict[tuple[str, str], list[ConsumedRecord]] = defaultdict(list)
        self.total = 0

    def add(self, rec: ConsumedRecord) -> None:
        key = ((rec.key or b"").decode(), rec.headers.get("message_id", b"").decode())
        self.records[key].append(rec)
        self.total += 1
        row = self.rows.get(key)
        if row is not None:
            row.records += 1
            row.terminals += rec.headers.get("type", b"").decode() in TERMINALS

    async def follow(self, reader: TopicReader) -> None:
        """Read until cancelled."""
        while True:
            for rec in await reader.poll(timeout_ms=100):
                self.add(rec)

    async def catch_up(self, reader: TopicReader, timeout: float = 30) -> None:
        """Read until every partition's end, as of now, has been read."""
        ends = await reader.end_offsets()
        async with asyncio.timeout(timeout):
            while True:
                positions = {p: await reader.position(p) for p in ends}
                if all(positions[p] >= end for p, end in ends.items()):
                    return
                for rec in await reader.poll(timeout_ms=200):
                    self.add(rec)


@dataclass
class Verdict:
    streams: int = 0
    deltas: int = 0
    records: int = 0
    delta_records: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures and self.streams > 0

    @property
    def ratio(self) -> float:
        """Delta records per delta written (lower is more coalescing)."""
        return self.delta_records / self.deltas if self.deltas else math.nan

    def percentile(self, q: float) -> float:
        return percentile(self.latencies_ms, q)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def judge(rows: list[StreamRow], back: ReadBack) -> Verdict:
    v = Verdict()
    for row in rows:
        v.streams += 1
        v.deltas += row.deltas
        where = f"{row.task}/{row.message}"
        recs = sorted(back.records.get((row.task, row.message), []), key=lambda r: r.offset)
        v.records += len(recs)
        if not recs:
            v.failures.append(f"{where}: no records in Kafka")
            continue
        if len({r.partition for r in recs}) != 1:
            v.failures.append(f"{where}: records on more than one partition")
        seqs = [int(r.headers.get("seq", b"-1")) for r in recs]
        if seqs != list(range(len(recs))):
            v.failures.append(f"{where}: seq headers {seqs[:8]}... are not 0, 1, 2...")
        kinds = [r.headers.get("type", b"").decode() for r in recs]
        terminals = sum(k in TERMINALS for k in kinds)
        if terminals != 1 or kinds[-1] not in TERMINALS:
            v.failures.append(f"{where}: {terminals} terminals, last record is {kinds[-1]!r}")
        text, first_delta = [], None
        for rec, kind in zip(recs, kinds, strict=True):
            if kind != "delta":
                continue
            v.delta_records += 1
            first_delta = first_delta or rec
            delta = orjson.loads(rec.value or b"{}").get("delta") or {}
            text.append(delta.get(TEXT_FIELD.get(delta.get("type", ""), ""), "") or "")
        if "".join(text) != "".join(row.written):
            v.failures.append(f"{where}: the delta text in Kafka is not what the agent wrote")
        if first_delta is not None and row.first_write is not None:
            # CreateTime has millisecond resolution: compare it with the write's millisecond.
            row.latency_ms = float(first_delta.timestamp_ms - math.floor(row.first_write * 1000))
            v.latencies_ms.append(row.latency_ms)
        if row.state != "acked":
            v.failures.append(f"{where}: terminal not acknowledged ({row.state})")
    strays = set(back.records) - {(r.task, r.message) for r in rows}
    if strays:
        v.failures.append(f"{len(strays)} streams in Kafka that no agent wrote")
    return v
