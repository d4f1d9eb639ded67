"""The paced figures `make bench` computes from each run (CPU per delta, wake-ups), and
what it reads of the sidecar in /proc."""

from __future__ import annotations

import argparse
import os
import time

import pytest

from bench.proc import rss_bytes, wakeups
from bench.run import paced_entry, positive
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


def test_rss_is_read_from_the_same_status_file() -> None:
    assert rss_bytes(os.getpid()) > 1 << 20


def test_runs_without_a_wakeup_count_give_neither_wakeup_figure() -> None:
    spec = LoadSpec(200, 200, rate=40.0, task_prefix="p")
    res = LoadResult(spec, seconds=5.0, deltas_sent=40_000, terminals_acked=200)
    entry = paced_entry("paced", [(res, 0.2, 0)], firsts={})
    assert entry["wakeups_per_s"] is None
    assert entry["deltas_per_wakeup"] is None


@pytest.mark.parametrize("text", ["0", "-3"])
def test_a_count_of_runs_must_be_at_least_one(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="at least 1"):
        positive(text)
    assert positive("3") == 3
