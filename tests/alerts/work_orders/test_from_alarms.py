"""Alarm → work order policy, on a real SQLite state store."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from facmon.alerts.errors import TransitionInputError, TransitionNotAllowedError
from facmon.alerts.notifications.notifier import ConsoleNotifier
from facmon.alerts.notifications.outbox import Outbox
from facmon.alerts.work_orders.from_alarms import WorkOrderPolicy
from facmon.alerts.work_orders.lifecycle import resolution_time, response_time
from facmon.alerts.work_orders.records import open_work_order, transition_work_order
from facmon.config.facility import FacilityConfig
from facmon.config.loader import load_config
from facmon.config.registry import DeviceRegistry
from facmon.facility.errors import NotFoundError
from facmon.facility.model import (
    AlarmState,
    Category,
    NotificationState,
    Priority,
    Reading,
    WorkOrderSource,
    WorkOrderStatus,
)
from facmon.facility.model import WorkOrderStatus as S
from facmon.facility.state import StateStore
from facmon.rules.conditions import RuleSet
from facmon.rules.processor import RuleProcessor
from tests.conftest import EXAMPLE, FakeClock

SHANGHAI = ZoneInfo("Asia/Shanghai")
NIGHT = datetime(2026, 11, 21, 18, 0, tzinfo=UTC)  # 02:00 on the 22nd in Shanghai


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[RuleProcessor, StateStore, io.StringIO, io.StringIO]]:
    config: FacilityConfig = load_config(EXAMPLE, env={})
    registry = DeviceRegistry.from_config(config)
    store = StateStore.open(f"sqlite:///{tmp_path / 'state.db'}")
    english, chinese = io.StringIO(), io.StringIO()
    notifiers = [ConsoleNotifier("duty", "en", english), ConsoleNotifier("值班", "zh", chinese)]
    processor = RuleProcessor(RuleSet.compile(config.rules, registry), registry, store)
    processor.listeners.append(WorkOrderPolicy(config.work_orders, registry, store, SHANGHAI, notifiers))
    yield processor, store, english, chinese
    store.close()


def feed(p: RuleProcessor, device: str, fields: dict, minutes: float = 0) -> None:
    at = NIGHT + timedelta(minutes=minutes)
    p.on_readings([Reading(device, int(at.timestamp() * 1000), fields)], at)


def test_pipe_burst_at_night_opens_a_p1_due_in_five_minutes(setup) -> None:
    processor, store, english, chinese = setup
    feed(processor, "pump-1", {"pressure_bar": 1.1})
    [order] = store.list_work_orders().items
    assert order.number == "WO-20261122-0001"  # numbered by the facility's local date
    assert (order.priority, order.category, order.status, order.source) == (
        Priority.P1,
        "water",
        WorkOrderStatus.OPEN,
        "alarm",
    )
    assert order.due_at == NIGHT + timedelta(minutes=5)
    assert order.team == "duty-engineers" and order.location == "riverside / A / B1 pump room"
    [alarm] = store.list_alarms().items
    assert order.alarm_id == alarm.id
    assert [e.kind for e in store.work_order_events(order.id)] == ["opened"]

    # Queued with the work order, one message per channel, in its language; the outbox sends them.
    queued = store.list_notifications().items
    assert sorted((n.channel, n.language, n.state) for n in queued) == [
        ("duty", "en", NotificationState.PENDING),
        ("值班", "zh", NotificationState.PENDING),
    ]
    assert english.getvalue() == chinese.getvalue() == ""
    notifiers = [ConsoleNotifier("duty", "en", english), ConsoleNotifier("值班", "zh", chinese)]
    clock = FakeClock(NIGHT)
    assert Outbox(store, {n.name: n for n in notifiers}, clock).deliver_due(clock.now()) == 2
    assert "WO-20261122-0001 [P1] Booster pump 1" in english.getvalue()
    assert "respond by 2026-11-22 02:05" in english.getvalue()
    assert "P1 紧急" in chinese.getvalue() and "响应期限 2026-11-22 02:05" in chinese.getvalue()


def test_elevator_entrapment_is_p2_for_the_lift_contractor(setup) -> None:
    processor, store, _, _ = setup
    feed(processor, "lift-B1", {"state": "idle", "entrapment": True})
    [order] = store.list_work_orders().items
    assert (order.priority, order.team, order.category) == (Priority.P2, "lift-contractor", "elevator")
    assert order.due_at == NIGHT + timedelta(minutes=30)


def test_one_work_order_per_alarm_episode_and_clearing_only_annotates(setup) -> None:
    processor, store, _, _ = setup
    feed(processor, "pump-1", {"pressure_bar": 2.5}, 0)  # major → P2
    feed(processor, "pump-1", {"pressure_bar": 1.0}, 1)  # same alarm, now critical: no second order, a P1
    feed(processor, "pump-1", {"pressure_bar": 4.0}, 2)  # returns
    [order] = store.list_work_orders().items
    assert order.status is WorkOrderStatus.OPEN  # someone still has to verify on site
    assert [e.kind for e in store.work_order_events(order.id)] == ["opened", "priority_raised", "alarm_cleared"]


def test_the_same_fault_again_within_the_hour_joins_the_unresolved_work_order(setup) -> None:
    processor, store, _, _ = setup
    feed(processor, "pump-1", {"pressure_bar": 2.5}, 0)  # major: alarm 1, a work order
    feed(processor, "pump-1", {"pressure_bar": 4.0}, 1)
    [first] = store.list_alarms().items
    processor.acknowledge([first.id], "operator", NIGHT + timedelta(minutes=2))  # cleared
    feed(processor, "pump-1", {"pressure_bar": 2.5}, 30)  # a new alarm of the same rule: joins
    [order] = store.list_work_orders().items
    kinds = [e.kind for e in store.work_order_events(order.id)]
    assert kinds == ["opened", "alarm_cleared", "alarm_cleared", "alarm_raised_again"]  # returned, then cleared
    assert "raised again (pump-pressure-low, major)" in (store.work_order_events(order.id)[-1].note or "")

    feed(processor, "pump-1", {"pressure_bar": 4.0}, 31)
    [returned] = store.list_alarms(states=[AlarmState.RETURNED_UNACKED]).items
    processor.acknowledge([returned.id], "operator", NIGHT + timedelta(minutes=32))
    feed(processor, "pump-1", {"pressure_bar": 2.5}, 120)  # more than an hour after the work order: a new one
    assert store.list_work_orders().total == 2


def test_numbers_count_up_within_the_day(setup) -> None:
    processor, store, _, _ = setup
    feed(processor, "smoke-A-01", {"state": "alarm"}, 0)
    feed(processor, "smoke-B-02", {"state": "alarm"}, 1)
    numbers = sorted(o.number for o in store.list_work_orders().items)
    assert numbers == ["WO-20261122-0001", "WO-20261122-0002"]


def test_severities_without_a_policy_entry_open_nothing(tmp_path: Path) -> None:
    config = load_config(EXAMPLE, env={})
    registry = DeviceRegistry.from_config(config)
    store = StateStore.open(f"sqlite:///{tmp_path / 'state.db'}")
    processor = RuleProcessor(RuleSet.compile(config.rules, registry), registry, store)
    only_critical = config.work_orders.model_copy(update={"auto_open": config.work_orders.auto_open[:2]})
    processor.listeners.append(WorkOrderPolicy(only_critical, registry, store, SHANGHAI, []))
    feed(processor, "smoke-A-01", {"state": "normal", "battery_pct": 10})
    assert store.list_alarms().total == 1 and store.list_work_orders().total == 0
    store.close()


# -- moving a work order through its states, on SQLite and PostgreSQL


def test_a_night_callout_is_recorded_step_by_step_with_its_times(state_store: StateStore) -> None:
    """Burst pipe at 02:00 → assigned at 02:03 → on site 02:12 → resolved 02:50 → signed off at 09:00."""
    clock = FakeClock(NIGHT)
    with state_store.begin() as tx:
        order = open_work_order(
            tx,
            title="Booster pump 1: pressure low",
            category=Category.WATER,
            priority=Priority.P1,
            source=WorkOrderSource.ALARM,
            at=clock.now(),
            tz=SHANGHAI,
            response_target=timedelta(minutes=5),
        )
    clock.advance(minutes=3)
    transition_work_order(state_store, order.id, S.ASSIGNED, by="duty", at=clock.now(), assignee="zhang.wei")
    clock.advance(minutes=9)
    transition_work_order(state_store, order.id, S.IN_PROGRESS, by="zhang.wei", at=clock.now(), note="on site")
    clock.advance(minutes=38)
    transition_work_order(
        state_store, order.id, S.RESOLVED, by="zhang.wei", at=clock.now(), note="replaced the pressure switch"
    )
    clock.advance(hours=6, minutes=10)
    closed = transition_work_order(state_store, order.id, S.CLOSED, by="wang.li", at=clock.now())

    assert closed == state_store.get_work_order(order.id)
    assert closed.assignee == "zhang.wei"
    assert response_time(closed) == timedelta(minutes=3)
    assert resolution_time(closed) == timedelta(minutes=50)
    assert closed.closed_at == NIGHT + timedelta(hours=7)
    history = [
        (e.kind, e.from_status, e.status, e.actor, e.note, e.at - NIGHT)
        for e in state_store.work_order_events(order.id)
    ]
    assert history == [
        ("opened", None, S.OPEN, "system", None, timedelta(0)),
        ("transition", S.OPEN, S.ASSIGNED, "duty", None, timedelta(minutes=3)),
        ("transition", S.ASSIGNED, S.IN_PROGRESS, "zhang.wei", "on site", timedelta(minutes=12)),
        ("transition", S.IN_PROGRESS, S.RESOLVED, "zhang.wei", "replaced the pressure switch", timedelta(minutes=50)),
        ("transition", S.RESOLVED, S.CLOSED, "wang.li", None, timedelta(hours=7)),
    ]


def test_a_refused_move_changes_nothing(state_store: StateStore) -> None:
    with state_store.begin() as tx:
        order = open_work_order(
            tx,
            title="Lamp",
            category=Category.GENERAL,
            priority=Priority.P4,
            source=WorkOrderSource.MANUAL,
            at=NIGHT,
            tz=SHANGHAI,
            response_target=None,
        )
    with pytest.raises(TransitionNotAllowedError):
        transition_work_order(state_store, order.id, S.CLOSED, by="wang.li", at=NIGHT)
    with pytest.raises(TransitionInputError):
        transition_work_order(state_store, order.id, S.CANCELLED, by="wang.li", at=NIGHT)
    assert state_store.get_work_order(order.id) == order
    assert len(state_store.work_order_events(order.id)) == 1
    with pytest.raises(NotFoundError):
        transition_work_order(state_store, 999, S.ASSIGNED, by="wang.li", at=NIGHT, assignee="x")


def test_an_alarm_that_worsens_makes_its_work_order_more_urgent(setup) -> None:
    processor, store, _english, _chinese = setup
    feed(processor, "pump-1", {"pressure_bar": 2.7})  # below 3.0: major, a P2 due in 30 minutes
    [order] = store.list_work_orders().items
    assert (order.priority, order.due_at) == (Priority.P2, NIGHT + timedelta(minutes=30))
    feed(processor, "pump-1", {"pressure_bar": 1.5}, minutes=2)  # below 1.6: the same alarm, now critical
    [raised] = store.list_work_orders().items
    assert raised.id == order.id and raised.priority == Priority.P1
    assert raised.due_at == NIGHT + timedelta(minutes=7)  # P1's 5 minutes from when it worsened
    [event] = [e for e in store.work_order_events(order.id) if e.kind == "priority_raised"]
    assert event.note is not None and event.note.startswith("P2 → P1: alarm")
    feed(processor, "pump-1", {"pressure_bar": 2.7}, minutes=4)  # better again: the priority stays
    assert store.get_work_order(order.id).priority == Priority.P1
