"""The sidecar's footprint, behind the resources in deploy/ (README "Deploy"): RSS and
CPU of one `sidecar run` process, read from /proc, while idle, under paced and burst
load (`sidecar bench`), through a Kafka outage that fills --max-pending-bytes (the
broker stopped while the load goes on), and while it catches up after the broker is back.

    python -m bench.footprint [--max-pending-bytes N]      (make footprint)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable

from bench.proc import cpu_seconds, rss_bytes
from testbed import create_topic, open_broker
from testbed.base import free_ports
from testbed.process import sidecar_command

MiB = 1024 * 1024


def rss_mib(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) in MiB."""
    return rss_bytes(pid) / MiB, rss_bytes(pid, "VmHWM") / MiB


def pending_bytes(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        body = response.read().decode()
    match = re.search(r"^sidecar_pending_bytes (\S+)$", body, re.M)
    return float(match.group(1)) if match else 0.0


def phase(label: str, pid: int, action: Callable[[], object]) -> None:
    cpu, wall = cpu_seconds(pid), time.monotonic()
    action()
    cpu, wall = cpu_seconds(pid) - cpu, time.monotonic() - wall
    rss, peak = rss_mib(pid)
    print(
        f"{label:<44} {wall:6.1f} s  CPU {100 * cpu / wall:5.1f} % of a core  "
        f"RSS {rss:6.1f} MiB  peak {peak:6.1f} MiB",
        flush=True,
    )


def bench(sock: str, *args: str) -> Callable[[], object]:
    command = [*sidecar_command("bench", "--socket", sock, "--json", *args)]
    return lambda: subprocess.run(command, check=True, capture_output=True, timeout=300)


def until(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not reached in {timeout} s")
        time.sleep(1)  # sampling a running process's gauge


def main(max_pending: int) -> int:
    with open_broker(own=True) as broker, tempfile.TemporaryDirectory() as folder:
        topic = asyncio.run(create_topic(broker.bootstrap_servers, partitions=3))
        sock = f"{folder}/sidecar.sock"
        (port,) = free_ports(1)
        run = sidecar_command(
            "run", "--socket", sock, "--bootstrap-servers", broker.bootstrap_servers,
            "--topic", topic, "--http-host", "127.0.0.1", "--http-port", str(port),
            "--max-pending-bytes", str(max_pending),
        )  # fmt: skip
        proc = subprocess.Popen(run, stderr=subprocess.DEVNULL)
        pid = proc.pid
        try:
            until(lambda: os.path.exists(sock), 30)
            phase("idle", pid, lambda: time.sleep(10))
            phase("10 streams x 50 deltas/s, 30 s", pid,
                  bench(sock, "--streams", "10", "--deltas", "1500", "--rate", "50"))  # fmt: skip
            phase("100 streams x 20 deltas/s, 20 s", pid,
                  bench(sock, "--streams", "100", "--deltas", "400", "--rate", "20"))  # fmt: skip
            phase("burst: 100 streams x 2,000 deltas", pid,
                  bench(sock, "--streams", "100", "--deltas", "2000"))  # fmt: skip

            # More than --max-pending-bytes of 64-character deltas, from many streams.
            streams = str(3 * max_pending // (64 * 500))
            load = sidecar_command(
                "bench", "--socket", sock, "--acks", "none", "--streams", streams,
                "--deltas", "500", "--delta-chars", "64", "--ack-timeout", "1",
            )  # fmt: skip
            broker.stop()
            loader = subprocess.Popen(load, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                phase(f"Kafka down until {max_pending // MiB} MiB pending", pid,
                      lambda: until(lambda: pending_bytes(port) >= max_pending, 120))  # fmt: skip
                broker.start()
                phase("Kafka back: catching up, load going on", pid,
                      lambda: until(lambda: loader.poll() is not None
                                    and pending_bytes(port) == 0, 300))  # fmt: skip
            finally:
                loader.kill()
                loader.wait()
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(60)
            print(f"SIGTERM: exit {code} after {time.monotonic() - started:.2f} s")
            return code
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-pending-bytes", type=int, default=32 * MiB)
    sys.exit(main(parser.parse_args().max_pending_bytes))
