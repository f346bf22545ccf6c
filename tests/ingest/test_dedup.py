"""Duplicates are handled once; `seq` gaps are counted, late readings and counter restarts are not gaps."""

from __future__ import annotations

from facmon.facility.model import Reading
from facmon.ingest.dedup import DuplicateFilter


def r(seq: int | None, ts: int, device: str = "pump-1") -> Reading:
    return Reading(device, ts, {"pressure_bar": 4.0}, seq)


def test_a_reading_seen_before_or_earlier_in_the_batch_is_not_fresh() -> None:
    f = DuplicateFilter()
    first = [r(1, 1000), r(2, 2000)]
    assert f.fresh(first) == first
    f.remember(first)
    assert f.fresh([r(2, 2000), r(3, 3000), r(3, 3000), r(2, 2000, "pump-2")]) == [r(3, 3000), r(2, 2000, "pump-2")]


def test_the_same_ts_with_another_seq_is_another_reading() -> None:
    f = DuplicateFilter()
    f.remember([r(1, 1000)])
    assert f.fresh([r(2, 1000)]) == [r(2, 1000)]
    f.remember([r(None, 5000)])
    assert f.fresh([r(None, 5000)]) == []


def test_nothing_is_remembered_until_the_batch_is_durable() -> None:
    f = DuplicateFilter()
    batch = [r(1, 1000)]
    assert f.fresh(batch) == batch
    assert f.fresh(batch) == batch  # the first attempt failed and is retried: still fresh


def test_the_window_is_bounded_per_device() -> None:
    f = DuplicateFilter(window=3)
    f.remember([r(i, i * 1000) for i in range(5)])
    assert f.fresh([r(0, 0), r(4, 4000)]) == [r(0, 0)]  # forgotten, so taken again; the store keeps it once


def test_seq_gaps_late_readings_and_restarts() -> None:
    f = DuplicateFilter()
    assert f.remember([r(1, 1000), r(2, 2000), r(5, 5000)]) == 2
    assert f.remember([r(3, 3000)]) == 0  # a late reading of the backlog is not a new gap
    assert f.late("pump-1") == 1
    assert f.remember([r(0, 9000), r(1, 10_000)]) == 0  # the device rebooted: its counter starts again
    assert f.remember([r(4, 13_000)]) == 2
    assert f.gaps("pump-1") == 4
    assert f.gaps("pump-2") == 0
    assert f.remember([r(None, 20_000)]) == 0
