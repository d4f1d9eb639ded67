"""Synthetic agents for `sidecar bench` and the benchmark: many streams of tiny text
deltas over a few connections, timing what the agent can see (terminal acks)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from sidecar.tools.client import open_client


@dataclass
class LoadSpec:
    streams: int = 100
    deltas: int = 200
    delta_chars: int = 8
    connections: int = 4
    rate: float = 0.0  # deltas/s per stream; 0: as fast as the socket takes them
    acks: str = "terminal"
    task_prefix: str = "bench"


@dataclass
class LoadResult:
    spec: LoadSpec
    seconds: float = 0.0
    deltas_sent: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    ack_latencies: list[float] = field(default_factory=list)  # terminal sent -> acked, s
    first_delta_sent: dict[tuple[str, str], float] = field(default_factory=dict)  # wall time

    @property
    def deltas_per_second(self) -> float:
        return self.deltas_sent / self.seconds if self.seconds else 0.0

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.ack_latencies)
        return {
            "streams": self.spec.streams,
            "deltas_per_stream": self.spec.deltas,
            "connections": self.spec.connections,
            "seconds": round(self.seconds, 3),
            "deltas_sent": self.deltas_sent,
            "deltas_per_second": round(self.deltas_per_second),
            "terminal_ack_ms_p50": _ms(percentile(lat, 50)),
            "terminal_ack_ms_p99": _ms(percentile(lat, 99)),
            "errors": self.errors,
        }


def percentile(sorted_values: list[float], p: float) -> float | None:
    if not sorted_values:
        return None
    k = min(len(sorted_values) - 1, max(0, round(p / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


def _ms(v: float | None) -> float | None:
    return None if v is None else round(v * 1000, 2)


def _update(kind: str, task: str, msg: str, **fields: Any) -> bytes:
    ptm = {"id": msg, "task_id": task, "content": None}
    return orjson.dumps({"type": kind, "parent_task_message": ptm, **fields})


async def run_load(socket: Path | str, spec: LoadSpec) -> LoadResult:
    result = LoadResult(spec)
    piece = ("abcdefghij" * (spec.delta_chars // 10 + 1))[: spec.delta_chars]
    per_conn = [list(range(c, spec.streams, spec.connections)) for c in range(spec.connections)]

    async def connection(stream_ids: list[int]) -> None:
        async with open_client(socket, client="sidecar-bench", acks=spec.acks) as client:
            terminal_sent: dict[int, float] = {}
            keys = [
                (f"{spec.task_prefix}-{i % max(1, spec.streams // 4)}", f"m{i}") for i in stream_ids
            ]
            for task, msg in keys:
                await client.send(_update("start", task, msg, content={"type": "text"}))
            gap = 1 / spec.rate if spec.rate else 0.0
            for j in range(spec.deltas):
                for task, msg in keys:
                    if j == 0:
                        result.first_delta_sent[(task, msg)] = time.time()
                    delta = {"type": "text", "text_delta": piece}
                    await client.send(_update("delta", task, msg, delta=delta))
                    result.deltas_sent += 1
                if gap:
                    await asyncio.sleep(gap)  # pacing the synthetic agent, not a test wait
            for task, msg in keys:
                seq = await client.send(_update("done", task, msg))
                terminal_sent[seq] = time.monotonic()
            if spec.acks == "none":
                return
            replies = await client.wait_replies(set(terminal_sent), timeout=300)
            for reply in client.replies.values():
                if reply["type"] == "error":
                    code = str(reply["code"])
                    result.errors[code] = result.errors.get(code, 0) + 1
            for seq, sent in terminal_sent.items():
                got = replies.get(seq)
                if got is not None and got["type"] == "ack":
                    result.ack_latencies.append(client.ack_times.get(seq, sent) - sent)

    started = time.monotonic()
    await asyncio.gather(*(connection(ids) for ids in per_conn if ids))
    result.seconds = time.monotonic() - started
    return result
