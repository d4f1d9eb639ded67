"""Where the sidecar's CPU goes, per stage of the data path, under one load phase.

Starts a broker and a `sidecar run` process, attaches py-spy for one load phase, and
folds every sampled stack into the stage of its innermost frame that belongs to a known
stage. py-spy samples with `--native`: its non-blocking mode reads a frame pointer that
stays on the last Python frame while the thread is in C (uvloop, a system call), which
put most samples in the "event loop". Native stacks say where a sample really was: one
waiting in epoll is idle (not counted), one in a read/write/send system call is the
kernel's share (counted as "system calls"). Shares are of on-CPU samples; us/delta
splits the phase's measured CPU by them.

    python -m bench.profile --phase paced      # 200 streams x 40 deltas/s
    python -m bench.profile --phase burst      # 200 streams x 500 deltas, flat out

py-spy is a dev tool, not a dependency: `pip install py-spy` into the venv first.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from bench.proc import cpu_seconds
from sidecar.tools.loadgen import LoadSpec, run_load
from testbed import create_topic, open_broker, unique_topic_name
from testbed.process import start_sidecar

# (stage, path fragment): the innermost frame matching a fragment names the stage.
STAGES = (
    ("metrics", "prometheus_client/"),
    ("framing", "protocol/framing.py"),
    ("decode", "protocol/frames.py"),
    ("replies", "protocol/replies.py"),
    ("coalesce", "/transform/"),
    ("sink", "/sink/"),
    ("aiokafka producer", "aiokafka/producer/"),
    ("aiokafka records", "aiokafka/record/"),
    ("aiokafka network", "aiokafka/"),
    ("connection", "/source/"),
    ("event loop", "asyncio/"),
)


# Innermost native frames: waiting (idle, not CPU) and system calls.
IDLE = ("epoll_wait", "epoll_pwait")
SYSCALLS = ("read (libc", "write (libc", "send (libc", "recv (libc", "writev (libc")


def stage_of(stack: str) -> tuple[str, str]:
    """The stage of a sampled stack, and the frame that named it ("idle" for a wait)."""
    frames = stack.split(";")
    if frames and frames[-1].startswith(IDLE):
        return "idle", frames[-1]
    if frames and frames[-1].startswith(SYSCALLS):
        return "system calls", frames[-1]
    for frame in reversed(frames):
        for stage, fragment in STAGES:
            if fragment in frame:
                return stage, frame
    return "other", frames[-1] if frames else ""


def fold(raw: Path) -> tuple[Counter[str], Counter[str]]:
    """Samples per stage, and per innermost known frame."""
    stages: Counter[str] = Counter()
    frames: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stage, frame = stage_of(stack)
            if stage == "idle":
                continue
            stages[stage] += int(count)
            frames[frame] += int(count)
    return stages, frames


async def profile(bootstrap: str, args: argparse.Namespace) -> None:
    topic = unique_topic_name("profile")
    await create_topic(bootstrap, name=topic, partitions=6)
    if args.phase == "paced":
        spec = LoadSpec(200, 100, delta_chars=6, connections=8, rate=40.0, task_prefix="p")
    else:
        spec = LoadSpec(200, 500, delta_chars=6, connections=8, task_prefix="b")
    with tempfile.TemporaryDirectory(prefix="sidecar-profile-") as tmp:
        sock = Path(tmp) / "s.sock"
        raw = Path(tmp) / "stacks.txt"
        proc = await start_sidecar(sock, bootstrap, topic, "--log-level", "warning", *args.extra)
        spy = await asyncio.create_subprocess_exec(
            *(args.py_spy, "record", "--pid", str(proc.pid), "--rate", "500"),
            *("--format", "raw", "--output", str(raw), "--native"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            await asyncio.sleep(1.0)  # py-spy attaches
            cpu0 = cpu_seconds(proc.pid)
            result = await run_load(sock, spec)
            cpu = cpu_seconds(proc.pid) - cpu0
        finally:
            spy.send_signal(signal.SIGINT)  # py-spy writes its stacks and exits
            await asyncio.wait_for(spy.wait(), 30)
            proc.terminate()
            await proc.wait()
        stages, frames = fold(raw)
    total = sum(stages.values()) or 1
    deltas = result.deltas_accepted
    per = cpu / deltas * 1e6
    print(f"{args.phase}: {deltas} deltas, sidecar CPU {cpu:.2f} s = {per:.1f} us/delta")
    print(f"{'stage':<20} {'share':>7} {'us/delta':>9}")
    for stage, n in stages.most_common():
        share = n / total
        print(f"{stage:<20} {share:7.1%} {share * cpu / deltas * 1e6:9.2f}")
    if args.top:
        print("innermost frames:")
        for frame, n in frames.most_common(args.top):
            print(f"{n / total:7.1%}  {frame}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--phase", choices=("paced", "burst"), default="paced")
    p.add_argument(
        "--py-spy", default=shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    )
    p.add_argument("--top", type=int, default=0, help="also print the N busiest frames")
    p.add_argument("extra", nargs="*", help="extra `sidecar run` options (after --)")
    args = p.parse_args()
    with open_broker() as broker:
        asyncio.run(profile(broker.bootstrap_servers, args))


if __name__ == "__main__":
    main()
