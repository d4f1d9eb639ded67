"""Synthetic agents for `sidecar bench` and the benchmark: many concurrent streams of small
text deltas over a few connections, timed as an agent sees it.

Each stream is `start`, `deltas` text deltas, `done`. A connection carries every
`connections`-th stream and sends them in rounds, one delta per stream per round (as
agents streaming side by side do), paced to `rate` deltas/s per stream or as fast as the
socket takes them. Terminal ack latency is from writing the `done` line to reading its
ack, so it covers coalescing, the producer and Kafka's acks=all.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from sidecar.model import AckMode, StreamKey
from sidecar_client.client import Client, open_client


@dataclass
class LoadSpec:
    streams: int = 100
    deltas: int = 200  # per stream
    delta_chars: int = 8
    connections: int = 4
    rate: float = 0.0  # deltas/s per stream; 0: as fast as the socket takes them
    acks: AckMode = "terminal"
    task_prefix: str = "bench"  # task ids are "<prefix>-<run id>t<n>"
    tasks: int = 0  # distinct task ids the streams share; 0: one task per stream
    ack_timeout: float = 60.0  # after the last line, wait this long for acks, seconds
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    def __post_init__(self) -> None:
        if min(self.streams, self.connections) < 1 or min(self.deltas, self.delta_chars) < 0:
            raise ValueError("streams and connections must be >= 1, deltas and chars >= 0")

    def key(self, i: int) -> StreamKey:
        """Stream i's (task_id, message_id); the run id keeps reruns clear of streams a
        sidecar still remembers as closed (--closed-stream-ttl)."""
        task = i % self.tasks if self.tasks else i
        tag = f"{self.task_prefix}-{self.run_id}"
        return (f"{tag}t{task}", f"{tag}m{i}")

    def piece(self) -> str:
        return ("0123456789abcdefghijklmnopqrstuvwxyz" * (self.delta_chars // 36 + 1))[
            : self.delta_chars
        ]

    def expected_text(self) -> str:
        """Every stream's assembled text."""
        return self.piece() * self.deltas


@dataclass
class LoadResult:
    spec: LoadSpec
    seconds: float = 0.0  # first line written to last terminal ack (or last line written)
    deltas_sent: int = 0
    delta_errors: int = 0  # delta lines answered with an error
    terminals_acked: int = 0
    terminal_errors: int = 0  # terminal lines answered with an error
    errors: Counter[str] = field(default_factory=Counter)  # error replies by code
    ack_latencies: list[float] = field(default_factory=list)  # seconds, terminal acks
    started_at: float = 0.0  # wall clock (time.time()), to line up with Kafka timestamps
    # Wall clock when each stream's first delta was written (first-delta latency to the
    # Kafka record's CreateTime).
    first_delta_sent: dict[StreamKey, float] = field(default_factory=dict)

    @property
    def deltas_accepted(self) -> int:
        return self.deltas_sent - self.delta_errors

    @property
    def terminals_missing(self) -> int:
        expected = self.spec.streams if self.spec.acks != "none" else 0
        return expected - self.terminals_acked - self.terminal_errors

    @property
    def ok(self) -> bool:
        return not self.errors and self.terminals_missing == 0

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.ack_latencies)
        s = self.spec
        return {
            "streams": s.streams,
            "deltas_per_stream": s.deltas,
            "delta_chars": s.delta_chars,
            "connections": s.connections,
            "rate": s.rate,
            "acks": s.acks,
            "seconds": round(self.seconds, 4),
            "deltas_sent": self.deltas_sent,
            "deltas_accepted": self.deltas_accepted,
            "deltas_per_second": round(self.deltas_accepted / self.seconds) if self.seconds else 0,
            "terminals_acked": self.terminals_acked,
            "terminals_missing": self.terminals_missing,
            "terminal_ack_ms_p50": _ms(percentile(lat, 50)),
            "terminal_ack_ms_p99": _ms(percentile(lat, 99)),
            "terminal_ack_ms_max": _ms(lat[-1] if lat else None),
            "errors": dict(self.errors),
        }

    def report(self) -> str:
        """A short human report."""
        d = self.summary()
        rate = f"{d['rate']:g}/s per stream" if d["rate"] else "as fast as possible"
        lines = [
            f"{d['streams']} streams x {d['deltas_per_stream']} deltas of {d['delta_chars']} "
            f"chars over {d['connections']} connections, acks={d['acks']}, {rate}",
            f"  wall time        {d['seconds']:.3f} s",
            f"  deltas accepted  {d['deltas_accepted']} ({d['deltas_per_second']}/s)",
        ]
        if d["acks"] != "none":
            lines.append(
                f"  terminal acks    p50 {d['terminal_ack_ms_p50']} ms, "
                f"p99 {d['terminal_ack_ms_p99']} ms, max {d['terminal_ack_ms_max']} ms "
                f"({d['terminals_acked']} acked, {d['terminals_missing']} missing)"
            )
        errors = ", ".join(f"{code} {n}" for code, n in sorted(d["errors"].items()))
        lines.append(f"  errors           {errors or 'none'}")
        return "\n".join(lines)


def percentile(sorted_values: list[float], p: float) -> float | None:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def _ms(v: float | None) -> float | None:
    return None if v is None else round(v * 1000, 2)


_PACED_SLOT = 25


def _update(kind: str, key: StreamKey, **fields: Any) -> bytes:
    ptm = {"id": key[1], "task_id": key[0], "content": None}
    return orjson.dumps({"type": kind, "parent_task_message": ptm, **fields})


async def _drive(
    client: Client, spec: LoadSpec, keys: list[StreamKey], result: LoadResult, phase: float = 0.0
) -> None:
    """One connection's streams: rounds of deltas (a stream's start goes with its first
    delta, as an agent writes them), dones; then its acks."""
    # Seqs are known before writing (the next line gets client.seq + 1), and recorded
    # then: under backpressure a reply can come back while a write is still draining.
    start_seqs: set[int] = set()
    terminal_sent: dict[int, float] = {}  # seq -> monotonic time written
    pending: set[int] = set()
    all_acked = asyncio.Event()

    async def read_replies() -> None:
        # Timed as they are read, so a late reader of a quick ack does not inflate it.
        async for reply in client.replies():
            seq = reply.get("seq")
            if reply["type"] == "error":
                result.errors[str(reply.get("code"))] += 1
                if seq in terminal_sent:
                    result.terminal_errors += 1
                elif isinstance(seq, int) and seq not in start_seqs:
                    result.delta_errors += 1
            elif seq in terminal_sent:
                result.terminals_acked += 1
                result.ack_latencies.append(time.monotonic() - terminal_sent[seq])
            pending.discard(seq)
            if not pending and len(terminal_sent) == len(keys):
                all_acked.set()
        all_acked.set()  # closed: nothing more will come

    reader = asyncio.create_task(read_replies())
    try:
        # Paced agents do not all write in the same millisecond: a connection writes at
        # most `_PACED_SLOT` streams' deltas at once, its other streams later in the round,
        # and the connections (independent agents) are `phase` of a slot apart.
        groups = math.ceil(len(keys) / _PACED_SLOT) if spec.rate else 1
        slots = [keys[g::groups] for g in range(groups)]
        delta = {"type": "text", "text_delta": spec.piece()}
        # A stream's delta line is the same every round: encoded once, so the agents'
        # own JSON encoding does not compete with the sidecar for the CPU.
        slot_lines = [[_update("delta", k, delta=delta) for k in slot] for slot in slots]
        slot_starts = [[_update("start", k, content={"type": "text"}) for k in s] for s in slots]
        began = time.monotonic()
        for j in range(spec.deltas):
            for g, slot in enumerate(slots):
                if spec.rate:
                    # Against an absolute schedule, so slow rounds do not lower the rate.
                    due = began + (j + (g + phase) / groups) / spec.rate
                    await asyncio.sleep(max(0.0, due - time.monotonic()))
                lines = slot_lines[g]
                if j == 0:
                    # Each stream opens just before its first delta, in the same write.
                    start_seqs.update(range(client.seq + 1, client.seq + 1 + len(slot)))
                    result.first_delta_sent.update(dict.fromkeys(slot, time.time()))
                    await client.send_many(slot_starts[g] + lines)
                else:
                    await client.send_many(lines)
                result.deltas_sent += len(lines)
        if not spec.deltas:  # no round carried the starts
            start_seqs.update(range(client.seq + 1, client.seq + 1 + len(keys)))
            await client.send_many([line for starts in slot_starts for line in starts])
        dones = [_update("done", k) for k in keys]
        written = time.monotonic()
        for seq in range(client.seq + 1, client.seq + 1 + len(dones)):
            terminal_sent[seq] = written
            if spec.acks != "none":
                pending.add(seq)
        await client.send_many(dones)
        if not pending:
            return
        # Replies that came while writing have been counted; wait for the rest.
        if not all_acked.is_set():
            await asyncio.wait_for(all_acked.wait(), spec.ack_timeout)
    except TimeoutError:
        pass  # counted as missing
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)


async def run_load(socket: Path | str, spec: LoadSpec) -> LoadResult:
    """Drive a running sidecar at `socket` with `spec`'s streams; raises OSError when it
    cannot connect."""
    result = LoadResult(spec, started_at=time.time())
    groups = [
        [spec.key(i) for i in range(c, spec.streams, spec.connections)]
        for c in range(min(spec.connections, spec.streams))
    ]
    async with contextlib.AsyncExitStack() as stack:
        # Every connection is open before the clock starts.
        clients = [
            await stack.enter_async_context(
                open_client(socket, client="sidecar-bench", acks=spec.acks)
            )
            for _ in groups
        ]
        started = time.monotonic()
        await asyncio.gather(
            *(
                _drive(c, spec, g, result, phase=i / len(groups))
                for i, (c, g) in enumerate(zip(clients, groups, strict=True))
            )
        )
        result.seconds = time.monotonic() - started
    return result
