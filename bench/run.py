"""End-to-end benchmark on a local broker: one run reports

- deltas/s end to end (written to the socket -> every terminal acknowledged by Kafka),
- records per delta (how much coalescing saved),
- first-delta latency p50/p99 (the agent writing a stream's first delta -> the
  CreateTime of the Kafka record carrying it),
- the sidecar's CPU while N streams sit open and idle.

The sidecar runs as its own process (`sidecar run`), the synthetic agents in this one.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from sidecar.sink.kafka import open_consumer
from sidecar.tools.loadgen import LoadSpec, percentile, run_load
from sidecar_client.client import open_client
from testbed import create_topic, open_broker
from testbed.process import start_sidecar


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def scan(bootstrap: str, topic: str) -> tuple[dict[str, int], dict[tuple[str, str], int]]:
    """Delta records per task prefix, and each stream's first delta CreateTime (ms)."""
    deltas: dict[str, int] = {}
    firsts: dict[tuple[str, str], int] = {}
    async with open_consumer(bootstrap, topic) as reader:
        remaining = {p: e for p, e in (await reader.end_offsets()).items() if e > 0}
        async for rec in reader.records():
            if rec.headers.get("type") == b"delta":
                ptm = orjson.loads(rec.value or b"{}")["parent_task_message"]
                prefix = ptm["task_id"].rsplit("-", 1)[0]
                deltas[prefix] = deltas.get(prefix, 0) + 1
                firsts.setdefault((ptm["task_id"], ptm["id"]), rec.timestamp_ms)
            if rec.offset + 1 >= remaining.get(rec.partition, 0):
                remaining.pop(rec.partition, None)
                if not remaining:
                    break
    return deltas, firsts


async def idle_cpu(sock: Path, pid: int, streams: int, seconds: float) -> dict[str, Any]:
    async with open_client(sock, client="bench-idle", acks="none") as c:
        for i in range(streams):
            ptm = {"id": f"idle-{i}", "task_id": f"idle-{i % 100}"}
            await c.send({"type": "start", "parent_task_message": ptm, "content": {}})
            await c.send(
                {
                    "type": "delta",
                    "parent_task_message": ptm,
                    "delta": {"type": "text", "text_delta": "x"},
                }
            )
        await asyncio.sleep(1)  # let the first flushes settle
        before = cpu_seconds(pid)
        await asyncio.sleep(seconds)  # the measurement window itself
        used = cpu_seconds(pid) - before
        return {
            "idle_streams": streams,
            "seconds": seconds,
            "cpu_seconds": round(used, 3),
            "cpu_percent": round(100 * used / seconds, 2),
        }


async def bench(bootstrap: str, args: argparse.Namespace) -> dict[str, Any]:
    topic = f"bench-{int(time.time())}"
    await create_topic(bootstrap, name=topic, partitions=args.partitions)
    common = {"delta_chars": args.delta_chars, "connections": args.connections}
    # Throughput: agents write as fast as the socket takes it.
    burst = LoadSpec(args.streams, args.deltas, task_prefix="burst", **common)
    # Latency: agents at an LLM's pace (tokens/s per stream), many streams at once.
    paced = LoadSpec(args.streams, args.paced_deltas, rate=args.rate, task_prefix="paced", **common)
    with tempfile.TemporaryDirectory(prefix="sidecar-bench-") as tmp:
        sock = Path(tmp) / "s.sock"
        proc = await start_sidecar(sock, bootstrap, topic, "--log-level", "warning")
        try:
            cpu0 = cpu_seconds(proc.pid)
            fast = await run_load(sock, burst)
            burst_cpu = cpu_seconds(proc.pid) - cpu0
            cpu0 = cpu_seconds(proc.pid)
            slow = await run_load(sock, paced)
            paced_cpu = cpu_seconds(proc.pid) - cpu0
            idle = await idle_cpu(sock, proc.pid, args.idle_streams, args.idle_seconds)
        finally:
            proc.terminate()
            await proc.wait()
    deltas, firsts = await scan(bootstrap, topic)
    lat = sorted(firsts[k] / 1000 - t for k, t in slow.first_delta_sent.items() if k in firsts)
    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "burst": {
            **fast.summary(),
            "records_per_delta": round(deltas.get("burst", 0) / max(1, fast.deltas_sent), 4),
            "sidecar_cpu_seconds": round(burst_cpu, 2),
        },
        "paced": {
            **slow.summary(),
            "deltas_per_second_per_stream": args.rate,
            "records_per_delta": round(deltas.get("paced", 0) / max(1, slow.deltas_sent), 4),
            "first_delta_ms_p50": _ms(percentile(lat, 50)),
            "first_delta_ms_p99": _ms(percentile(lat, 99)),
            "sidecar_cpu_seconds": round(paced_cpu, 2),
        },
        "idle": idle,
    }


def _ms(v: float | None) -> float | None:
    return None if v is None else round(v * 1000, 2)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--streams", type=int, default=200)
    p.add_argument("--deltas", type=int, default=500)
    p.add_argument("--delta-chars", type=int, default=6)
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--partitions", type=int, default=6)
    p.add_argument("--rate", type=float, default=40.0, help="paced deltas/s per stream")
    p.add_argument("--paced-deltas", type=int, default=100)
    p.add_argument("--idle-streams", type=int, default=10_000)
    p.add_argument("--idle-seconds", type=float, default=10.0)
    args = p.parse_args()
    with open_broker() as broker:
        result = asyncio.run(bench(broker.bootstrap_servers, args))
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
