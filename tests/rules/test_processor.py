"""The processor keeps the alarm table in step with the engine, on a real SQLite state store."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from facmon.facility.model import AlarmState, Reading
from facmon.facility.registry import DeviceRegistry
from facmon.facility.state import StateStore
from facmon.rules.conditions import RuleSet
from facmon.rules.processor import AlarmChange, RuleProcessor

T0 = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)


class Recorder:
    def __init__(self) -> None:
        self.changes: list[AlarmChange] = []

    def on_alarm_change(self, change: AlarmChange) -> None:
        self.changes.append(change)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    s = StateStore.open(f"sqlite:///{tmp_path / 'state.db'}")
    yield s
    s.close()


def processor(ruleset: RuleSet, registry: DeviceRegistry, store: StateStore) -> tuple[RuleProcessor, Recorder]:
    p = RuleProcessor(ruleset, registry, store)
    p.restore()
    recorder = Recorder()
    p.listeners.append(recorder)
    return p, recorder


def feed(p: RuleProcessor, pressure: float, second: int) -> None:
    at = T0 + timedelta(seconds=second)
    p.on_readings([Reading("pump-1", int(at.timestamp() * 1000), {"pressure_bar": pressure})], at)


def test_raise_and_return_are_stored_with_their_audit_trail(
    ruleset: RuleSet, registry: DeviceRegistry, store: StateStore
) -> None:
    p, recorder = processor(ruleset, registry, store)
    feed(p, 2.5, 0)
    feed(p, 1.0, 10)
    feed(p, 4.0, 20)
    [alarm] = store.list_alarms().items
    assert (alarm.rule, alarm.state, alarm.severity, alarm.value) == (
        "pump-pressure-low",
        AlarmState.RETURNED_UNACKED,
        "critical",
        4.0,
    )
    assert [e.kind for e in store.alarm_events(alarm.id)] == ["raised", "severity_changed", "returned"]
    assert [(c.new, c.event.kind) for c in recorder.changes] == [
        (True, "raised"),
        (False, "severity_changed"),
        (False, "returned"),
    ]
    assert recorder.changes[0].alarm.id == alarm.id


def test_a_restart_neither_loses_nor_re_raises_an_alarm(
    ruleset: RuleSet, registry: DeviceRegistry, store: StateStore
) -> None:
    first, _ = processor(ruleset, registry, store)
    feed(first, 2.5, 0)
    second, recorder = processor(ruleset, registry, store)  # a new process over the same store
    feed(second, 2.4, 10)
    assert recorder.changes == []
    assert store.list_alarms().total == 1
    feed(second, 4.0, 20)
    assert [c.event.kind for c in recorder.changes] == ["returned"]
    [alarm] = store.list_alarms().items
    assert alarm.state is AlarmState.RETURNED_UNACKED


def test_a_listener_failure_does_not_stop_the_others(
    ruleset: RuleSet, registry: DeviceRegistry, store: StateStore
) -> None:
    class Broken:
        def on_alarm_change(self, change: AlarmChange) -> None:
            raise RuntimeError("boom")

    p = RuleProcessor(ruleset, registry, store)
    recorder = Recorder()
    p.listeners += [Broken(), recorder]
    feed(p, 1.0, 0)
    assert len(recorder.changes) == 1
