"""The idle phase: thousands of open streams with nothing pending cost the sidecar nothing.

5,000 streams are opened (a `start` and one delta each, all acknowledged by Kafka, so
nothing is pending) and left open; the sidecar's CPU is read from /proc over the window.
In the same window a small simulation of the design this project replaces (`demo.seed`:
one ticker task per stream, waking every 50 ms) runs the same number of streams in a
process of its own, and its CPU is measured the same way.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from sidecar_client import open_sidecar


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class IdleResult:
    streams: int
    seconds: float
    sidecar_cpu_s: float
    seed_cpu_s: float
    seed_wakeups: int
    open_s: float  # how long opening the streams took

    @property
    def sidecar_percent(self) -> float:
        return 100 * self.sidecar_cpu_s / self.seconds

    @property
    def seed_percent(self) -> float:
        return 100 * self.seed_cpu_s / self.seconds


def _update(kind: str, i: int, **fields: Any) -> dict[str, Any]:
    task = f"idle-{i % 50}"
    parent = {"id": f"idle-msg-{i}", "task_id": task, "content": {"type": "text"}}
    return {"type": kind, "parent_task_message": parent, **fields}


async def idle_phase(
    socket: Path, sidecar_pid: int, streams: int = 5000, seconds: float = 5.0
) -> IdleResult:
    started = time.monotonic()
    async with open_sidecar(socket, client="demo-idle/1", acks="all") as sidecar:
        for i in range(streams):
            await sidecar.send(_update("start", i, content={"type": "text", "content": ""}))
            await sidecar.send(_update("delta", i, delta={"type": "text", "text_delta": "hi"}))
        await sidecar.flush(timeout=120)  # every record acknowledged: nothing pending
        opened = time.monotonic() - started
        seed = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "demo.seed",
            "--streams",
            str(streams),
            "--seconds",
            str(seconds),
            stdout=asyncio.subprocess.PIPE,
        )
        # The simulation starts its tickers before its window opens; ours opens now.
        cpu0, wall0 = cpu_seconds(sidecar_pid), time.monotonic()
        await asyncio.sleep(seconds)
        cpu, wall = cpu_seconds(sidecar_pid) - cpu0, time.monotonic() - wall0
        out, _ = await seed.communicate()
        if seed.returncode != 0:
            raise RuntimeError(f"the seed simulation exited with {seed.returncode}")
        sim = orjson.loads(out)
    # Leaving the block closes the connection: the sidecar ends the 5,000 streams.
    return IdleResult(
        streams=streams,
        seconds=wall,
        sidecar_cpu_s=cpu,
        seed_cpu_s=sim["cpu_seconds"] * wall / sim["seconds"],
        seed_wakeups=int(sim["wakeups"]),
        open_s=opened,
    )
