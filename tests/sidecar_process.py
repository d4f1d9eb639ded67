"""Helpers for tests that run `sidecar run` as a process of its own: what /proc says of
it (RSS and its peak), and its /metrics, polled (another process has no event to wait
on)."""

from __future__ import annotations

import asyncio
import urllib.request
from pathlib import Path

KiB = 1024


def status_bytes(pid: int, field: str) -> int:
    for row in Path(f"/proc/{pid}/status").read_text().splitlines():
        if row.startswith(field + ":"):
            return int(row.split()[1]) * KiB
    raise KeyError(field)


def reset_peak(pid: int) -> None:
    """Start VmHWM again from the current RSS (Linux: clear_refs 5)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


async def metric(port: int, name: str) -> float:
    def get() -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            body: bytes = resp.read()
            return body

    for row in (await asyncio.to_thread(get)).decode().splitlines():
        if row.startswith(name + " "):
            return float(row.split()[1])
    raise KeyError(name)


async def until_metric(port: int, name: str, value: float, timeout: float = 120) -> None:
    # Another process: no event to wait on, so its ops endpoint is polled (bounded).
    async with asyncio.timeout(timeout):
        while await metric(port, name) != value:  # noqa: ASYNC110
            await asyncio.sleep(0.1)


async def rss_down_to(pid: int, target: int, timeout: float = 30) -> int:
    """The RSS as soon as it is at most `target` bytes, or as it is when `timeout` passes
    (the caller asserts on it)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    # Another process: polled, bounded by the deadline.
    while (rss := status_bytes(pid, "VmRSS")) > target and loop.time() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.2)
    return rss
