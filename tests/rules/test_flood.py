"""Alarm floods per site, on a real state store: start above 10 in 10 minutes, end at 5 or fewer, survive restarts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from facmon.facility.model import Alarm, AlarmEvent, AlarmFlood, AlarmState, Severity
from facmon.facility.state import StateStore
from facmon.rules.flood import FloodChange, FloodDetector
from facmon.rules.processor import AlarmChange

T0 = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


class Recorder:
    def __init__(self) -> None:
        self.changes: list[FloodChange] = []

    def on_flood_change(self, change: FloodChange) -> None:
        self.changes.append(change)


@pytest.fixture
def store(sqlite_store: StateStore) -> StateStore:
    return sqlite_store


def detector(store: StateStore, now: datetime = T0) -> tuple[FloodDetector, Recorder]:
    d = FloodDetector(store)
    d.restore(now)
    recorder = Recorder()
    d.listeners.append(recorder)
    return d, recorder


def record(store: StateStore, when: datetime, site: str = "riverside", kind: str = "raised") -> AlarmChange:
    """Store a smoke alarm's event as the rule processor does, and return the change it would announce."""
    with store.begin() as tx:
        alarm = tx.insert_alarm(
            Alarm(0, "smoke-alarm", "smoke-B-01", site, Severity.CRITICAL, AlarmState.ACTIVE_UNACKED, when, "alarm", "")
        )
        event = AlarmEvent(alarm.id, when, kind, alarm.state, alarm.severity)
        tx.add_alarm_event(event)
    return AlarmChange(alarm, event, kind == "raised")


def annunciate(d: FloodDetector, store: StateStore, seconds: list[float], site: str = "riverside") -> None:
    for s in seconds:
        d.on_alarm_change(record(store, at(s), site))


def floods(store: StateStore) -> list[tuple[str, datetime, datetime | None, int]]:
    return [(f.site, f.started_at, f.ended_at, f.peak) for f in store.floods_overlapping(at(-86400), at(86400))]


@pytest.mark.parametrize(
    ("spacing", "flood"),
    [
        pytest.param(60, False, id="11 alarms 60 s apart: the first has left the window when the 11th comes"),
        pytest.param(59, True, id="11 alarms 59 s apart: 11 within 10 minutes"),
    ],
)
def test_the_eleventh_alarm_within_10_minutes_starts_a_flood(store: StateStore, spacing: int, flood: bool) -> None:
    d, recorder = detector(store)
    annunciate(d, store, [i * spacing for i in range(10)])
    assert floods(store) == [] and recorder.changes == []

    annunciate(d, store, [10 * spacing])
    started = at(10 * spacing)
    assert floods(store) == ([("riverside", started, None, 11)] if flood else [])
    assert recorder.changes == ([FloodChange("riverside", True, started, 11)] if flood else [])


def test_only_annunciations_count(store: StateStore) -> None:
    d, _ = detector(store)
    for i, kind in enumerate(["returned", "cleared", "acknowledged", "severity_changed", "comment"] * 4):
        d.on_alarm_change(record(store, at(i), kind=kind))
    annunciate(d, store, [30 + i for i in range(10)])
    assert floods(store) == []
    d.on_alarm_change(record(store, at(50), kind="reactivated"))
    assert floods(store) == [("riverside", at(50), None, 11)]


def test_the_peak_follows_the_highest_count(store: StateStore) -> None:
    d, _ = detector(store)
    annunciate(d, store, [i * 10 for i in range(15)])  # 15 within 140 s
    assert floods(store) == [("riverside", at(100), None, 15)]
    annunciate(d, store, [650])  # the first 6 have left the window: 9 + 1 is below the peak
    assert floods(store) == [("riverside", at(100), None, 15)]
    assert [f.peak for f in d.open_floods()] == [15]


def test_a_flood_ends_when_the_count_falls_to_5_not_before(store: StateStore) -> None:
    d, recorder = detector(store)
    annunciate(d, store, [i * 10 for i in range(15)])  # the last at 140 s
    d.tick(at(650))  # 9 left: below the start level, above the end level
    d.tick(at(689))  # the tenth (90 s) leaves at 690 s, leaving 5
    assert floods(store) == [("riverside", at(100), None, 15)]
    d.tick(at(700))
    assert floods(store) == [("riverside", at(100), at(690), 15)]
    assert recorder.changes[1:] == [FloodChange("riverside", False, at(690), 5)]
    d.tick(at(1000))
    assert len(recorder.changes) == 2


def test_an_alarm_after_a_quiet_spell_ends_the_flood_at_the_moment_it_fell_to_5(store: StateStore) -> None:
    d, recorder = detector(store)
    annunciate(d, store, [i * 10 for i in range(15)])
    annunciate(d, store, [1200])  # no tick meanwhile
    assert floods(store) == [("riverside", at(100), at(690), 15)]
    assert [c.started for c in recorder.changes] == [True, False]


def test_hysteresis_a_count_between_5_and_10_neither_ends_nor_restarts_a_flood(store: StateStore) -> None:
    d, recorder = detector(store)
    annunciate(d, store, [i * 10 for i in range(12)])  # the last at 110 s
    d.tick(at(655))  # 6 left
    annunciate(d, store, [656, 657, 658, 659, 660, 661, 662])  # 12 again
    assert floods(store) == [("riverside", at(100), None, 12)]
    assert len(recorder.changes) == 1


def test_a_flood_after_one_has_ended_is_a_new_flood(store: StateStore) -> None:
    d, _ = detector(store)
    annunciate(d, store, [i for i in range(11)])
    d.tick(at(1000))
    annunciate(d, store, [2000 + i for i in range(11)])
    assert floods(store) == [("riverside", at(10), at(605), 11), ("riverside", at(2010), None, 11)]


def test_floods_are_per_site(store: StateStore) -> None:
    d, recorder = detector(store)
    for i in range(10):
        annunciate(d, store, [i * 2], "riverside")
        annunciate(d, store, [i * 2 + 1], "hillside")
    annunciate(d, store, [30], "hillside")
    assert floods(store) == [("hillside", at(30), None, 11)]
    d.tick(at(800))
    assert floods(store) == [("hillside", at(30), at(611), 11)]
    assert [(c.site, c.started) for c in recorder.changes] == [("hillside", True), ("hillside", False)]


def test_a_restart_mid_flood_keeps_the_flood_and_its_window(state_store: StateStore) -> None:
    """On SQLite and PostgreSQL: the new process neither opens a second flood nor forgets the open one."""
    first, _ = detector(state_store)
    annunciate(first, state_store, [i * 10 for i in range(12)])  # flood from 100 s, 12 in the window

    second, recorder = detector(state_store, now=at(180))  # a new process over the same store
    assert [(f.site, f.started_at, f.peak) for f in second.open_floods()] == [("riverside", at(100), 12)]
    annunciate(second, state_store, [190, 200])
    assert floods(state_store) == [("riverside", at(100), None, 14)]  # 12 remembered + 2
    assert recorder.changes == []
    second.tick(at(720))  # 14 in the window until the first left at 600 s; the ninth (80 s) leaves at 680 s
    assert floods(state_store) == [("riverside", at(100), at(680), 14)]
    assert recorder.changes == [FloodChange("riverside", False, at(680), 5)]


def test_a_restart_long_after_the_alarms_ends_the_flood_when_it_fell_to_5(store: StateStore) -> None:
    first, _ = detector(store)
    annunciate(first, store, [i * 10 for i in range(12)])
    second, recorder = detector(store, now=at(7200))  # down for two hours
    assert second.open_floods() == []
    assert floods(store) == [("riverside", at(100), at(660), 12)]
    assert recorder.changes == []  # it ended during restore, before anyone listened


def test_a_restart_records_a_flood_whose_start_was_never_recorded(store: StateStore) -> None:
    for i in range(12):
        record(store, at(i * 10))  # alarms committed, but the process died before the detector heard of them
    d, _ = detector(store, now=at(130))
    assert d.open_floods() == [AlarmFlood(d.open_floods()[0].id, "riverside", at(100), None, 12)]
    assert floods(store) == [("riverside", at(100), None, 12)]
