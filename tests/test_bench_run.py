"""The paced figures `make bench` computes from each run: CPU per delta and wake-ups."""

from __future__ import annotations

import os
import time

from bench.run import paced_entry, wakeups
from sidecar.tools.loadgen import LoadResult, LoadSpec


def test_wakeups_count_each_wait_that_ended() -> None:
    before = wakeups(os.getpid())
    # The measured event itself, not a wait for something: a sleep always gives up the
    # CPU, so it is one voluntary context switch whatever the timing.
    time.sleep(0.001)
    assert wakeups(os.getpid()) >= before + 1


def test_paced_entry_takes_medians_over_runs() -> None:
    spec = LoadSpec(200, 200, rate=40.0, task_prefix="p")
    runs = []
    for cpu, wakes, seconds in ((0.16, 2000, 5.0), (0.20, 2500, 5.0), (0.24, 2000, 4.0)):
        res = LoadResult(spec, seconds=seconds, deltas_sent=40_000, terminals_acked=200)
        runs.append((res, cpu, wakes))
    entry = paced_entry("paced", runs, firsts={})
    assert entry["cpu_us_per_delta_runs"] == [4.0, 5.0, 6.0]
    assert entry["cpu_us_per_delta"] == 5.0
    assert entry["wakeups_per_s"] == 500  # 400, 500 and 500 a second
    assert entry["deltas_per_wakeup"] == 20.0  # 20, 16 and 20 deltas each
    assert not entry["saturated"]
