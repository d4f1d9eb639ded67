"""sidecar.budget's Trimmer: when it gives freed heap back to the system."""

from __future__ import annotations

from sidecar.budget import KINDS, Budget, Trimmer

MiB = 1 << 20


def test_trims_once_held_bytes_fall_to_a_quarter_of_their_high_point() -> None:
    budget = Budget()
    calls: list[int] = []
    trimmer = Trimmer(budget, min_drop=8 * MiB, rss=lambda: 0)

    def trim(pad: int) -> int:
        calls.append(pad)
        return 1

    trimmer._trim = trim
    held = [0]
    budget.pending_records = lambda: held[0]
    for value, trims in [
        (40 * MiB, False),  # rising: the high point
        (64 * MiB, False),
        (20 * MiB, False),  # above a quarter of 64 MiB
        (15 * MiB, True),  # a quarter or less, and 49 MiB below the high point
        (14 * MiB, False),  # the high point is now 15 MiB: once per flood
        (10 * MiB, False),  # above a quarter of the new high point
    ]:
        held[0] = value
        assert trimmer.check() is trims, value
    assert calls == [0]
    assert trimmer.trims == 1


def test_trims_the_tail_of_a_flood_once_after_trimming_with_some_still_held() -> None:
    # The once-a-second check found 6 MiB still held at a quarter of the high point; what
    # those free later is no min_drop of its own, but comes back when they are gone.
    budget = Budget()
    trimmer = Trimmer(budget, min_drop=8 * MiB, rss=lambda: 0)
    trimmer._trim = lambda pad: 1
    held = [0]
    budget.pending_records = lambda: held[0]
    for value, trims in [
        (64 * MiB, False),
        (6 * MiB, True),  # a quarter or less of 64 MiB
        (2 * MiB, False),  # not yet the tail
        (MiB // 2, True),  # an eighth of min_drop or less: the tail
        (0, False),  # once
    ]:
        held[0] = value
        assert trimmer.check() is trims, value
    assert trimmer.trims == 2


def test_without_glibc_nothing_is_called() -> None:
    budget = Budget()
    trimmer = Trimmer(budget, min_drop=1, rss=lambda: 0)
    trimmer._trim = None
    budget.open_streams = 100
    assert not trimmer.check()
    budget.open_streams = 0
    assert not trimmer.check()


def test_every_kind_is_reported() -> None:
    assert set(Budget().held()) == set(KINDS)


def test_a_small_drop_is_not_worth_a_trim() -> None:
    budget = Budget()
    trimmer = Trimmer(budget, min_drop=8 * MiB, rss=lambda: 0)
    trimmer._trim = lambda pad: 1
    budget.open_streams = 9 * MiB
    assert not trimmer.check()
    budget.open_streams = 2 * MiB  # a quarter, but only 7 MiB below
    assert not trimmer.check()


def test_trims_when_rss_grew_by_far_more_than_is_held() -> None:
    """A flood of lines that held little (invalid ones, say) still leaves freed heap: RSS
    grown by twice min_drop with held bytes under a quarter of the growth is trimmed,
    and a trim that freed nothing is not repeated until RSS grows as much again."""
    budget = Budget()
    rss = [100 * MiB]
    trimmer = Trimmer(budget, min_drop=8 * MiB, rss=lambda: rss[0])
    trimmer._trim = lambda pad: 1
    budget.open_streams = 2 * MiB
    rss[0] = 115 * MiB  # 15 MiB more: not yet
    assert not trimmer.check()
    rss[0] = 150 * MiB  # 50 MiB more, 2 MiB held
    assert trimmer.check()
    assert trimmer.floor == 150 * MiB  # it freed nothing (the stub): the floor rises
    assert not trimmer.check()
    budget.open_streams = 20 * MiB  # growth that is held bytes is not trimmed
    rss[0] = 170 * MiB
    assert not trimmer.check()
