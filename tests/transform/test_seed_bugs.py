"""The bug class this design must never have (seed: an idle coalescing ticker waking every
50 ms forever, a terminal published before pending deltas, a duplicate done, a cancelled
close that loses a batch). Each test here fails on such a design."""

from __future__ import annotations

import asyncio
import gc
import inspect
import time
from collections.abc import Iterator

import pytest

from sidecar.model import Record
from sidecar.transform.table import StreamTable
from tests.transform.support import Harness, Owner, delta, done, full, start, update

N = 5000


# -- (a) idle costs nothing ---------------------------------------------------------------


def test_idle_streams_cost_nothing_fake_clock() -> None:
    h = Harness()
    for i in range(N):
        h.send(start("t", f"m{i}"))
        h.send(delta("t", f"m{i}", "first"))  # flushed at once: nothing pending
    for i in range(0, N, 2):
        h.send(delta("t", f"m{i}", "second"))  # held: a window for half of them
    assert h.clock.armed == 2  # ONE flush tick for every held window, and the idle sweep
    h.clock.advance(0.05)  # each window flushes once, and the tick is gone
    assert h.table.open_count == N
    assert h.clock.armed == 1  # the one idle sweep, for all of them
    fired = h.clock.fired
    h.clock.advance(10)
    assert h.clock.fired == fired  # ten seconds, zero wake-ups
    h.clock.advance(300)  # one sweep ends them all, then nothing is armed
    assert h.clock.fired == fired + 1
    assert (h.table.open_count, h.clock.armed) == (0, 0)


def live_timers(loop: asyncio.AbstractEventLoop) -> int:
    scheduled: list[asyncio.TimerHandle] = loop._scheduled  # type: ignore[attr-defined]
    return len([t for t in scheduled if not t.cancelled()])


async def test_idle_streams_cost_nothing_on_a_real_loop() -> None:
    loop = asyncio.get_running_loop()
    records: list[Record] = []
    all_flushed = asyncio.Event()

    def emit(record: Record) -> None:
        records.append(record)
        if len(records) == 3 * N:
            all_flushed.set()

    table = StreamTable(
        clock=loop,
        emit=emit,
        flush_interval=0.01,
        max_buffered_chars=128,
        closed_ttl=600,
        idle_timeout=300,
    )
    owner = Owner()
    before, tasks = live_timers(loop), len(asyncio.all_tasks())
    for i in range(N):
        table.handle(update(start("t", f"m{i}")), owner, None)
        table.handle(update(delta("t", f"m{i}", "x")), owner, None)
        table.handle(update(delta("t", f"m{i}", "y")), owner, None)  # held in the window
    # Usually every "y" is held; one whose window had already passed (a slow machine)
    # is flushed at once. Either way: one flush tick for all the held windows.
    held = 3 * N - len(records)
    assert held > 0
    assert live_timers(loop) - before == 2  # the flush tick and the one idle sweep
    async with asyncio.timeout(10):
        await all_flushed.wait()  # the windows close
    assert live_timers(loop) - before <= 1  # only the idle sweep is left
    assert len(asyncio.all_tasks()) == tasks  # no task per stream, ever
    table.close()
    assert live_timers(loop) == before


@pytest.fixture
def no_gc() -> Iterator[None]:
    """Keep collector pauses out of the timings."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.mark.usefixtures("no_gc")
def test_idle_sweep_and_closed_keys_are_linear_not_quadratic() -> None:
    """Expiring the oldest of many streams (and closed keys) must be O(1) each: a plain
    dict reaches its front by walking deleted slots, which makes a big sweep quadratic
    (about 6x the opening time here, against 1x). Timed in this process's CPU time, which
    other processes on a loaded machine do not inflate as they do wall-clock time."""
    n = 40_000
    h = Harness(ttl=1, idle=300)
    owner, starts = Owner(), [update(start("t", f"m{i}")) for i in range(n)]
    t0 = time.process_time()
    for u in starts:
        h.table.handle(u, owner, None)
    opening = time.process_time() - t0
    t0 = time.process_time()
    h.clock.advance(300)  # one sweep ends all n
    h.clock.advance(2)
    h.send(start("t", "next"))
    h.send(done("t", "next"))  # a stream closing prunes the n expired closed keys
    sweeping = time.process_time() - t0
    assert (h.table.open_count, h.table.closed_count) == (0, 1)
    assert sweeping < 3 * opening + 0.05, (sweeping, opening)


# -- (b) nothing after a terminal, exactly one terminal -----------------------------------


@pytest.mark.parametrize("terminal", ["done", "full"])
def test_a_terminal_inside_the_window_is_last_and_alone(terminal: str) -> None:
    h = Harness()
    h.send(delta("t", "m", "a"))
    h.send(delta("t", "m", "b"))  # pending, flush timer armed
    h.send(done("t", "m") if terminal == "done" else full("t", "m", "ab"))
    fired = h.clock.fired
    h.clock.advance(1000)
    assert h.clock.fired == fired  # the window's timer was cancelled, not left to fire
    assert h.kinds() == ["delta", "delta", terminal]
    h.table.flush_all()
    h.table.end_all("shutdown")
    assert h.kinds() == ["delta", "delta", terminal]


# -- (c) no duplicate done ----------------------------------------------------------------


@pytest.mark.parametrize("then", ["disconnect", "shutdown", "idle"])
def test_a_client_done_is_never_followed_by_a_synthesized_one(then: str) -> None:
    h = Harness(idle=5)
    h.send(delta("t", "m", "a"))
    h.send(delta("t", "m", "b"))
    h.send(done("t", "m", index=2), ack=3)
    if then == "disconnect":
        assert h.table.end_owned_by(h.owner, "disconnect") == 0
    elif then == "shutdown":
        assert h.table.end_all("shutdown") == 0
    h.clock.advance(1000)
    assert h.kinds() == ["delta", "delta", "done"]
    assert (h.records[-1].terminal_reason, h.acks()[-1]) == ("client", [3])


# -- (d) no close path can be cancelled half-way ------------------------------------------


def test_no_public_method_is_awaitable() -> None:
    for name, fn in inspect.getmembers(StreamTable, inspect.isfunction):
        assert not inspect.iscoroutinefunction(fn), name
        assert not inspect.isasyncgenfunction(fn), name


async def test_a_task_cancelled_after_end_all_lost_and_doubled_nothing() -> None:
    h = Harness()
    for i in range(50):
        h.send(delta("t", f"m{i}", "a"), ack=2 * i)
        h.send(delta("t", f"m{i}", "b"), ack=2 * i + 1)  # pending in every stream

    async def closer() -> None:
        h.table.end_all("shutdown")
        await asyncio.sleep(3600)

    task = asyncio.create_task(closer())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for i in range(50):
        assert h.kinds(f"m{i}") == ["delta", "delta", "done"]
        assert h.texts(f"m{i}") == ["a", "b"]
    assert sorted(a for r in h.acks() for a in r) == list(range(100))
    assert (h.table.open_count, h.clock.armed) == (0, 0)
