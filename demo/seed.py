"""The design this project replaces, simulated for the demo's idle phase (see the seed
write-up in the project's shared notes): one coalescing buffer per stream, each with a
ticker task that waits for a flush signal with a 50 ms timeout, drains nothing when idle,
and loops, so every open stream wakes the event loop 20 times a second, forever.

    python -m demo.seed --streams 5000 --seconds 5

prints one JSON object: the streams, the window and this process's CPU seconds over it
(the tickers are all started before the window opens). It runs on the same event loop as
the sidecar (uvloop where installed), so the two figures differ only by design.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time

import orjson

FLUSH_INTERVAL_S = 0.05


class CoalescingBuffer:
    """The seed's buffer, reduced to what an idle stream does."""

    def __init__(self) -> None:
        self._pending: list[str] = []
        self._flush_signal = asyncio.Event()
        self._lock = asyncio.Lock()
        self._closed = False
        self.wakeups = 0
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while not self._closed:
            # The seed's loop: a timeout is the normal, idle outcome.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._flush_signal.wait(), timeout=FLUSH_INTERVAL_S)
            self._flush_signal.clear()
            self.wakeups += 1
            async with self._lock:
                batch, self._pending = self._pending, []
            if batch:
                pass  # an idle stream never has anything to publish

    async def aclose(self) -> None:
        self._closed = True
        self._flush_signal.set()
        await self._task


async def simulate(streams: int, seconds: float) -> dict[str, float]:
    buffers = [CoalescingBuffer() for _ in range(streams)]
    await asyncio.sleep(FLUSH_INTERVAL_S * 2)  # every ticker has started and is waiting
    cpu0, wall0 = time.process_time(), time.monotonic()
    woken0 = sum(b.wakeups for b in buffers)
    await asyncio.sleep(seconds)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    woken = sum(b.wakeups for b in buffers) - woken0
    for b in buffers:
        b._closed = True
    await asyncio.gather(*(b.aclose() for b in buffers))
    return {"streams": streams, "seconds": wall, "cpu_seconds": cpu, "wakeups": woken}


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m demo.seed", description=__doc__)
    ap.add_argument("--streams", type=int, default=5000)
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    try:
        import uvloop
    except ImportError:  # the sidecar installs it on Linux
        result = asyncio.run(simulate(args.streams, args.seconds))
    else:
        result = uvloop.run(simulate(args.streams, args.seconds))
    print(orjson.dumps(result).decode())


if __name__ == "__main__":
    main()
