"""What the benchmarks read of a process from Linux's /proc: CPU time, wake-ups, RSS."""

from __future__ import annotations

import os
from pathlib import Path

KiB = 1024


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of the process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def status_field(status: Path, name: str) -> int:
    """A number from a /proc `status` file (kB for memory fields; 0 if it is not there)."""
    for row in status.read_text().splitlines():
        if row.startswith(name + ":"):
            return int(row.split()[1])
    return 0


def wakeups(pid: int) -> int:
    """The process's voluntary context switches, over its threads: each is a wait (for the
    sockets, a timer) that ended, so the count is how often it woke to work."""
    total = 0
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        try:
            total += status_field(status, "voluntary_ctxt_switches")
        except OSError:
            continue  # a thread that ended meanwhile
    return total


def rss_bytes(pid: int, name: str = "VmRSS") -> int:
    """Resident memory of the process (`VmHWM`: its peak), in bytes."""
    return status_field(Path(f"/proc/{pid}/status"), name) * KiB
