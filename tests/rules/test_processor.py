"""The processor keeps the alarm table in step with the engine, on a real SQLite state store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from facmon.config.facility import FacilityConfig
from facmon.config.registry import DeviceRegistry
from facmon.facility.clock import epoch_ms
from facmon.facility.errors import NotFoundError, StateStoreError
from facmon.facility.model import AlarmEvent, AlarmState, Reading
from facmon.facility.state import StateStore, StateTransaction
from facmon.ingest.errors import SinkBehindError
from facmon.rules.conditions import RuleSet
from facmon.rules.errors import LifecycleError
from facmon.rules.processor import AlarmChange, RuleProcessor, StoredAlarms

T0 = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)


class Recorder:
    def __init__(self) -> None:
        self.changes: list[AlarmChange] = []

    def on_alarm_change(self, change: AlarmChange) -> None:
        self.changes.append(change)


@pytest.fixture
def store(sqlite_store: StateStore) -> StateStore:
    return sqlite_store


def processor(ruleset: RuleSet, registry: DeviceRegistry, store: StateStore) -> tuple[RuleProcessor, Recorder]:
    p = RuleProcessor(ruleset, registry, store)
    p.restore()
    recorder = Recorder()
    p.listeners.append(recorder)
    return p, recorder


def feed(p: RuleProcessor, pressure: float, minute: int) -> None:
    at = T0 + timedelta(minutes=minute)  # slow changes: the fast-fall rule stays out of it
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


def test_operator_actions_are_stored_and_told(ruleset: RuleSet, registry: DeviceRegistry, store: StateStore) -> None:
    p, recorder = processor(ruleset, registry, store)
    feed(p, 2.5, 0)
    [alarm] = store.list_alarms().items
    at = T0 + timedelta(minutes=5)
    p.shelve(alarm.id, "li", at, at + timedelta(hours=1), "transmitter being recalibrated")
    p.comment(alarm.id, "li", at, "contractor called")
    [acked] = p.acknowledge([alarm.id], "wang", at)
    assert acked.state is AlarmState.ACTIVE_ACKED and acked.acked_by == "wang" and acked.shelved
    kinds = [(e.kind, e.actor) for e in store.alarm_events(alarm.id)]
    assert kinds == [("raised", "system"), ("shelved", "li"), ("comment", "li"), ("acknowledged", "wang")]
    assert [c.event.kind for c in recorder.changes] == ["raised", "shelved", "comment", "acknowledged"]


def test_shelves_expire_on_the_tick(ruleset: RuleSet, registry: DeviceRegistry, store: StateStore) -> None:
    p, _ = processor(ruleset, registry, store)
    feed(p, 2.5, 0)
    [alarm] = store.list_alarms().items
    p.shelve(alarm.id, "li", T0, T0 + timedelta(minutes=30), "known nuisance")
    p.tick(T0 + timedelta(minutes=29))
    assert store.get_alarm(alarm.id).shelved
    p.tick(T0 + timedelta(minutes=30))
    back = store.get_alarm(alarm.id)
    assert not back.shelved
    assert store.alarm_events(alarm.id)[-1].note == "shelf time is up"


def test_acknowledging_many_is_all_or_none(ruleset: RuleSet, registry: DeviceRegistry, store: StateStore) -> None:
    p, _ = processor(ruleset, registry, store)
    feed(p, 2.5, 0)
    [alarm] = store.list_alarms().items
    with pytest.raises(NotFoundError):
        p.acknowledge([alarm.id, 999], "li", T0)
    assert store.get_alarm(alarm.id).state is AlarmState.ACTIVE_UNACKED  # nothing of the batch happened
    p.acknowledge([alarm.id], "li", T0)
    with pytest.raises(LifecycleError):
        p.acknowledge([alarm.id], "li", T0)  # already acknowledged
    assert [e.kind for e in store.alarm_events(alarm.id)] == ["raised", "acknowledged"]


def test_a_restart_in_the_middle_of_an_on_delay_keeps_the_timer(tmp_path: Path, registry: DeviceRegistry) -> None:
    from facmon.config.loader import parse_config

    text = """
sites: [{id: riverside, buildings: [{id: A, devices: [{id: pump-1, type: pump, name: P1}]}]}]
rules:
  - {id: low, name: Low, field: pressure_bar, for: 60s, levels: [{severity: major, below: 3.0}]}
"""
    config = parse_config(text, env={})
    devices = DeviceRegistry.from_config(config)
    rules = RuleSet.compile(config.rules, devices)
    store = StateStore.open(f"sqlite:///{tmp_path / 'delay.db'}")
    first = RuleProcessor(rules, devices, store)
    first.restore()
    first.on_readings([Reading("pump-1", int(T0.timestamp() * 1000), {"pressure_bar": 2.0})], T0)
    assert store.list_alarms().total == 0  # pending: 60 s have not passed

    second = RuleProcessor(rules, devices, store)  # the process restarted 40 s in
    second.restore()
    second.tick(T0 + timedelta(seconds=59))
    assert store.list_alarms().total == 0
    second.tick(T0 + timedelta(seconds=60))
    [alarm] = store.list_alarms().items
    assert alarm.raised_at == T0 + timedelta(seconds=60)
    store.close()


def test_alarms_committed_before_a_store_failure_are_still_told(
    ruleset: RuleSet, registry: DeviceRegistry, store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    p, recorder = processor(ruleset, registry, store)
    real_begin = store.begin
    transactions = {"n": 0}

    def failing_second_alarm() -> object:
        transactions["n"] += 1
        if transactions["n"] == 2:
            raise StateStoreError("disk full")
        return real_begin()

    monkeypatch.setattr(store, "begin", failing_second_alarm)
    at = T0
    readings = [
        Reading("pump-1", int(at.timestamp() * 1000), {"pressure_bar": 2.5}),
        Reading("pump-2", int(at.timestamp() * 1000), {"pressure_bar": 2.5}),
    ]
    with pytest.raises(SinkBehindError) as behind:
        p.on_readings(readings, at)
    assert [(c.alarm.device_id, c.event.kind) for c in recorder.changes] == [("pump-1", "raised")]
    # The first reading is judged and committed; the second is handed over again and raises its alarm once.
    assert behind.value.done == 1
    p.on_readings(readings[behind.value.done :], at)
    assert [(c.alarm.device_id, c.event.kind) for c in recorder.changes] == [("pump-1", "raised"), ("pump-2", "raised")]
    assert sorted(a.device_id for a in store.list_alarms().items) == ["pump-1", "pump-2"]


def test_acknowledging_many_is_one_transaction(
    ruleset: RuleSet, registry: DeviceRegistry, store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    p, _ = processor(ruleset, registry, store)
    at = T0
    p.on_readings(
        [
            Reading("pump-1", int(at.timestamp() * 1000), {"pressure_bar": 2.5}),
            Reading("pump-2", int(at.timestamp() * 1000), {"pressure_bar": 2.5}),
        ],
        at,
    )
    ids = [a.id for a in store.list_alarms().items]
    written = {"n": 0}
    real = StateTransaction.add_alarm_event

    def failing_second(self: StateTransaction, event: AlarmEvent, *, follow_up: bool = False) -> AlarmEvent:
        written["n"] += 1
        if written["n"] == 2:
            raise StateStoreError("disk full")
        return real(self, event, follow_up=follow_up)

    monkeypatch.setattr(StateTransaction, "add_alarm_event", failing_second)
    with pytest.raises(StateStoreError):
        p.acknowledge(ids, "li", at)
    assert {store.get_alarm(i).state for i in ids} == {AlarmState.ACTIVE_UNACKED}


def test_history_alone_is_saved_at_most_every_interval_and_on_flush(
    ruleset: RuleSet, registry: DeviceRegistry, store: StateStore
) -> None:
    p = RuleProcessor(ruleset, registry, store, save_every=3600)
    p.restore()
    feed(p, 4.0, 0)  # the first reading makes memory: a condition's state, saved at once
    saved = store.load_rule_state()
    key = ("pump-pressure-low", "pump-1")
    assert saved[key]["values"] == {"pressure_bar": 4.0}

    feed(p, 4.1, 1)  # normal again, only the latest value moved: left for later
    assert store.load_rule_state()[key]["values"] == {"pressure_bar": 4.0}

    feed(p, 2.5, 2)  # a condition begins: saved with its alarm, history with it
    assert store.load_rule_state()[key]["values"] == {"pressure_bar": 2.5}
    feed(p, 2.6, 3)
    assert store.load_rule_state()[key]["values"] == {"pressure_bar": 2.5}
    p.flush(T0 + timedelta(minutes=3))
    assert store.load_rule_state()[key]["values"] == {"pressure_bar": 2.6}


def test_shared_processors_see_what_another_workers_api_did_from_the_next_tick(
    example: FacilityConfig, registry: DeviceRegistry, store: StateStore
) -> None:
    # As in a cluster: the pump's partition holder, and another worker's processor serving the API.
    pumps = DeviceRegistry([d for d in registry if d.id == "pump-1"])
    holder = RuleProcessor(RuleSet.compile(example.rules, pumps), pumps, store, shared=True)
    api = RuleProcessor(RuleSet.compile(example.rules, registry), registry, store, shared=True)
    for p in (holder, api):
        p.restore()
    feed(holder, 2.5, 0)
    [alarm] = store.list_alarms().items

    api.shelve(alarm.id, "li", T0, T0 + timedelta(minutes=30), "known nuisance")
    # The holder never held the shelf, and unshelves it all the same (from the store as read for every partition).
    holder.tick(T0 + timedelta(minutes=30), StoredAlarms.read(store))
    assert not store.get_alarm(alarm.id).shelved
    assert store.alarm_events(alarm.id)[-1].note == "shelf time is up"

    # Out of service through the API: its standing alarm suppressed there, and the holder's next alarm too.
    api.take_out_of_service("pump-1", "li", T0 + timedelta(minutes=31), "valve replaced")
    assert store.get_alarm(alarm.id).suppressed
    assert not holder.is_out_of_service("pump-1")
    holder.tick(T0 + timedelta(minutes=32))
    assert holder.is_out_of_service("pump-1")
    api.return_to_service("pump-1", "li", T0 + timedelta(minutes=33))
    assert not store.get_alarm(alarm.id).suppressed


def test_a_shared_processor_restores_only_its_own_devices(
    example: FacilityConfig, registry: DeviceRegistry, store: StateStore
) -> None:
    everything, _ = processor(RuleSet.compile(example.rules, registry), registry, store)
    feed(everything, 2.5, 0)
    at = T0 + timedelta(minutes=1)
    everything.on_readings([Reading("panel-1", epoch_ms(at), {"voltage_l1_v": 150.0})], at)
    assert {a.device_id for a in store.list_alarms().items} >= {"pump-1", "panel-1"}
    panels = DeviceRegistry([d for d in registry if d.type == "power"])
    holder = RuleProcessor(RuleSet.compile(example.rules, panels), panels, store, shared=True)
    holder.restore()
    assert {key[1] for key in holder.state.memory} <= {d.id for d in panels}
    assert "panel-1" in {key[1] for key in holder.state.memory}
