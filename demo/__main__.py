"""`make demo`: a local Kafka broker, the sidecar, and agents streaming into it.

1. Agents stream reasoning, a tool call and an answer at an LLM's pace through the
   agent-side client library; a live table shows each stream's deltas written and the
   records that reached Kafka, and the sidecar process's CPU.
2. The verdict, from what is read back from Kafka: per stream deltas -> records, in
   order, exactly one terminal; first-delta latency (write -> CreateTime); totals.
3. Idle: 5,000 open streams for 5 s, the sidecar's CPU beside a simulation of the design
   it replaces, measured in the same window.

Exits 1 if any check fails. Not on a terminal, it prints plain lines.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

from rich.table import Table
from rich.text import Text

from demo.agents import StreamRow, plan, run_agent
from demo.idle import IdleResult, cpu_seconds, idle_phase
from demo.verdict import ReadBack, Verdict, judge
from demo.view import Screen, fmt_ms, stream_table
from sidecar.sink.kafka import open_consumer
from testbed import create_topic, open_broker
from testbed.jars import KAFKA_VERSION, cache_dir
from testbed.process import start_sidecar


class CpuMeter:
    """The sidecar process's CPU share over the last second or so."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples = [(time.monotonic(), cpu_seconds(pid))]
        self.percent = 0.0

    def update(self) -> float:
        now = (time.monotonic(), cpu_seconds(self.pid))
        self.samples.append(now)
        while len(self.samples) > 2 and now[0] - self.samples[1][0] >= 1.0:
            self.samples.pop(0)
        t0, c0 = self.samples[0]
        if now[0] - t0 > 0.2:
            self.percent = 100 * (now[1] - c0) / (now[0] - t0)
        return self.percent


def header(rows: list[StreamRow], back: ReadBack, cpu: float) -> str:
    deltas = sum(r.deltas for r in rows)
    acked = sum(r.state == "acked" for r in rows)
    return (
        f"[bold]{deltas:,}[/] deltas written -> [bold]{back.total:,}[/] records in Kafka"
        f"   {acked}/{len(rows)} streams acknowledged   sidecar CPU [bold]{cpu:.0f}%[/]"
    )


def plain_progress(rows: list[StreamRow], back: ReadBack, cpu: float) -> str:
    deltas = sum(r.deltas for r in rows)
    acked = sum(r.state == "acked" for r in rows)
    return (
        f"{deltas:,} deltas written, {back.total:,} records in Kafka, "
        f"{acked}/{len(rows)} streams acknowledged, sidecar CPU {cpu:.0f}%"
    )


async def stream_phase(
    screen: Screen, sock: Path, bootstrap: str, topic: str, pid: int, args: argparse.Namespace
) -> tuple[list[StreamRow], Verdict]:
    rows = plan(args.agents)
    back = ReadBack(rows)
    meter = CpuMeter(pid)
    rng = random.Random(42)
    screen.step(
        f"{args.agents} agents stream {len(rows)} messages (reasoning, tool call, answer) "
        "through sidecar_client at an LLM's token pace"
    )
    async with open_consumer(bootstrap, topic) as reader:
        follower = asyncio.create_task(back.follow(reader))
        agents = [
            asyncio.create_task(
                run_agent(sock, rows[3 * a : 3 * a + 3], rng, args.answer_words, args.pace)
            )
            for a in range(args.agents)
        ]
        with screen.live(
            lambda: stream_table(rows, header(rows, back, meter.percent)),
            lambda: plain_progress(rows, back, meter.percent),
        ) as tick:
            while not all(a.done() for a in agents):
                meter.update()
                tick()
                await asyncio.wait(agents, timeout=0.1)
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
            await back.catch_up(reader)
            meter.update()
            tick()
        for a in agents:
            a.result()  # an agent that crashed is the demo's failure, with its traceback
    return rows, judge(rows, back)


def show_verdict(screen: Screen, rows: list[StreamRow], v: Verdict) -> None:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for col in ("stream", "deltas -> records", "in order", "terminals", "first delta"):
        table.add_column(col, justify="left" if col == "stream" else "right")
    failed = {f.split(":")[0] for f in v.failures}
    for r in rows:
        ok = f"{r.task}/{r.message}" not in failed
        table.add_row(
            r.message,
            f"{r.deltas} -> {r.records}",
            Text("yes", "green") if ok else Text("NO", "bold red"),
            Text(str(r.terminals), "green" if r.terminals == 1 else "bold red"),
            "" if r.latency_ms is None else fmt_ms(r.latency_ms),
        )
    screen.print(
        Text("Verdict, from the records read back from Kafka", style="bold"),
        Text("(in order: seq 0, 1, 2... and the text exactly as written)", style="dim"),
    )
    screen.print(table)
    screen.print(
        f"Totals: [bold]{v.deltas:,}[/] deltas in, [bold]{v.delta_records:,}[/] delta records "
        f"out ({v.records:,} records with starts and terminals): "
        f"[bold]{v.ratio:.3f}[/] records per delta ({1 / v.ratio if v.ratio else 0:.1f} "
        "deltas per record)."
    )
    screen.print(
        f"First-delta latency, the agent's write -> the record's CreateTime in Kafka, over "
        f"{len(v.latencies_ms)} streams: p50 [bold]{fmt_ms(v.percentile(50))}[/], "
        f"p99 [bold]{fmt_ms(v.percentile(99))}[/]."
    )


def show_idle(screen: Screen, r: IdleResult) -> None:
    screen.print(Text(f"Idle: {r.streams:,} open streams, nothing pending", style="bold"))
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("design")
    table.add_column("wake-ups", justify="right")
    table.add_column(f"CPU over {r.seconds:.1f} s", justify="right")
    table.add_column("share of a core", justify="right")
    table.add_row(
        "this sidecar: no timer, no task per idle stream",
        "0",
        f"{r.sidecar_cpu_s:.2f} s",
        Text(f"{r.sidecar_percent:.1f}%", "bold green"),
    )
    table.add_row(
        "the seed design: a 50 ms ticker per stream",
        f"{r.seed_wakeups:,}",
        f"{r.seed_cpu_s:.2f} s",
        Text(f"{r.seed_percent:.1f}%", "bold red"),
    )
    screen.print(table)


def checks(v: Verdict, idle: IdleResult | None, sidecar_exit: int | None) -> list[tuple[bool, str]]:
    out = [
        (
            v.ok,
            f"every stream in Kafka in order, its text as written, one terminal last "
            f"({v.streams} streams)",
        ),
        (v.delta_records < v.deltas, "fewer delta records than deltas (coalescing)"),
        (len(v.latencies_ms) == v.streams, "a first-delta latency for every stream"),
    ]
    if idle is not None:
        out.append(
            (
                idle.sidecar_cpu_s * 5 < idle.seed_cpu_s,
                "idle streams cost the sidecar under a fifth of the seed design's CPU",
            )
        )
    out.append((sidecar_exit == 0, f"the sidecar drained on SIGTERM and exited 0 ({sidecar_exit})"))
    return out


async def run(screen: Screen, bootstrap: str, workdir: Path, args: argparse.Namespace) -> int:
    topic = f"demo-task-updates-{int(time.time())}"
    await create_topic(bootstrap, name=topic, partitions=3)
    sock = workdir / "sidecar.sock"
    env = {**os.environ, "SIDECAR_LOG_LEVEL": "warning"}
    t0 = time.monotonic()
    proc = await start_sidecar(sock, bootstrap, topic, *args.sidecar_option, env=env)
    screen.step(
        f"sidecar (pid {proc.pid}) accepting on {sock} in {time.monotonic() - t0:.1f}s, "
        f"producing to topic {topic}"
    )
    exit_code: int | None = None
    idle: IdleResult | None = None
    try:
        rows, verdict = await stream_phase(screen, sock, bootstrap, topic, proc.pid, args)
        show_verdict(screen, rows, verdict)
        if args.idle_streams:
            screen.step(
                f"opening {args.idle_streams:,} streams and leaving them open for "
                f"{args.idle_seconds:g} s; the seed design simulated beside them"
            )
            idle = await idle_phase(sock, proc.pid, args.idle_streams, args.idle_seconds)
            show_idle(screen, idle)
    finally:
        proc.send_signal(signal.SIGTERM)
        exit_code = await asyncio.wait_for(proc.wait(), 60)
    results = checks(verdict, idle, exit_code)
    for ok, what in results:
        mark = Text("PASS", "bold green") if ok else Text("FAIL", "bold red")
        screen.print(mark, what)
    for failure in verdict.failures[:20]:
        screen.print(Text(f"  {failure}", "red"))
    return 0 if all(ok for ok, _ in results) else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m demo", description=__doc__.split("\n")[0])
    ap.add_argument("--agents", type=int, default=6, help="agents, 3 streams each (6)")
    ap.add_argument("--answer-words", type=int, default=80, help="words per answer (80)")
    ap.add_argument("--pace", type=float, default=0.025, help="mean s between tokens (0.025)")
    ap.add_argument("--idle-streams", type=int, default=5000, help="idle phase streams (5000)")
    ap.add_argument("--idle-seconds", type=float, default=5.0, help="idle window, s (5)")
    ap.add_argument("--svg", type=Path, help="also save what was printed as an SVG picture")
    ap.add_argument(
        "--sidecar-option",
        action="append",
        default=[],
        help="an option for `sidecar run`, e.g. --sidecar-option=--flush-interval-ms=0",
    )
    args = ap.parse_args(argv)
    screen = Screen(record=args.svg is not None)
    if not os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        if not (cache_dir() / "libs").is_dir():
            screen.step(
                f"first run: fetching Apache Kafka {KAFKA_VERSION}'s jars with Maven into "
                f"{cache_dir()} (about 30 s, once; needs Java 17+ and Maven)"
            )
        screen.step("starting a Kafka broker (a local KRaft broker, or Docker if it answers)")
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="sidecar-demo-") as tmp, open_broker() as broker:
        screen.step(f"{broker.describe()} answering after {time.monotonic() - t0:.1f}s")
        code = asyncio.run(run(screen, broker.bootstrap_servers, Path(tmp), args))
        screen.step("stopping the broker")
    took = time.monotonic() - screen.started
    screen.print(
        Text(
            f"demo {'passed' if code == 0 else 'FAILED'} in {took:.1f}s",
            "bold green" if code == 0 else "bold red",
        )
    )
    if args.svg is not None:
        screen.console.save_svg(str(args.svg), title="make demo")
    return code


if __name__ == "__main__":
    sys.exit(main())
