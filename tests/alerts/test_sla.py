"""SLA breaches of work orders, on SQLite and PostgreSQL, with the clock moved by hand."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

from facmon.alerts.sla import RESOLVE_BREACHED, RESPONSE_BREACHED, SlaBreaches, SlaWatch, sla_breaches
from facmon.alerts.work_orders import open_work_order, transition_work_order
from facmon.facility.config import WorkOrdersConfig
from facmon.facility.model import Category, Priority, WorkOrder, WorkOrderSource
from facmon.facility.model import WorkOrderStatus as S
from facmon.facility.state import StateStore
from tests.conftest import FakeClock

SHANGHAI = ZoneInfo("Asia/Shanghai")


def open_p1(store: StateStore, clock: FakeClock) -> WorkOrder:
    """A burst pipe: P1, someone on site within 5 minutes, resolved within 4 hours."""
    with store.begin() as tx:
        return open_work_order(
            tx,
            title="Pump room B1: pipe burst",
            category=Category.WATER,
            priority=Priority.P1,
            source=WorkOrderSource.MANUAL,
            at=clock.now(),
            tz=SHANGHAI,
            response_target=timedelta(minutes=5),
        )


def kinds(store: StateStore, order: WorkOrder) -> list[str]:
    return [e.kind for e in store.work_order_events(order.id)]


def test_unanswered_p1_breaches_its_response_target_once(state_store: StateStore) -> None:
    clock = FakeClock()
    t0 = clock.now()
    watch = SlaWatch(state_store, WorkOrdersConfig(), clock)
    order = open_p1(state_store, clock)

    assert watch.check(clock.advance(minutes=5)) == []  # due, not yet past due
    [event] = watch.check(clock.advance(minutes=1))
    assert (event.kind, event.work_order_id, event.at, event.status) == (
        RESPONSE_BREACHED,
        order.id,
        t0 + timedelta(minutes=6),
        S.OPEN,
    )
    assert event.note is not None and "1m late" in event.note

    assert watch.check(clock.advance(minutes=1)) == []
    assert kinds(state_store, order) == ["opened", RESPONSE_BREACHED]
    assert sla_breaches(state_store, t0, t0 + timedelta(hours=1)) == SlaBreaches(response=1, resolve=0)
    assert sla_breaches(state_store, t0 + timedelta(minutes=7), t0 + timedelta(hours=1)) == SlaBreaches(0, 0)


def test_a_response_before_the_due_time_never_breaches_it(state_store: StateStore) -> None:
    clock = FakeClock()
    watch = SlaWatch(state_store, WorkOrdersConfig(), clock)
    order = open_p1(state_store, clock)
    transition_work_order(state_store, order.id, S.ASSIGNED, by="duty", at=clock.advance(minutes=3), assignee="li")

    assert watch.check(clock.advance(minutes=30)) == []
    assert watch.check(clock.advance(hours=3)) == []  # 3h33m: within the 4-hour resolve target too
    assert RESPONSE_BREACHED not in kinds(state_store, order)


def test_unresolved_after_the_resolve_target_breaches_it_once(state_store: StateStore) -> None:
    clock = FakeClock()
    t0 = clock.now()
    config = WorkOrdersConfig.model_validate({"resolve_targets": {"p1": "2h"}})
    watch = SlaWatch(state_store, config, clock)
    order = open_p1(state_store, clock)
    transition_work_order(state_store, order.id, S.IN_PROGRESS, by="li", at=clock.advance(minutes=4))
    transition_work_order(state_store, order.id, S.ON_HOLD, by="li", at=clock.advance(minutes=30), note="parts")

    assert watch.check(t0 + timedelta(hours=2)) == []
    [event] = watch.check(t0 + timedelta(hours=2, minutes=15))
    assert (event.kind, event.status) == (RESOLVE_BREACHED, S.ON_HOLD)
    assert event.note is not None and "within 2h" in event.note and "15m late" in event.note
    assert watch.check(t0 + timedelta(hours=9)) == []
    assert sla_breaches(state_store, t0, t0 + timedelta(days=1)) == SlaBreaches(response=0, resolve=1)


def test_resolve_targets_default_per_priority() -> None:
    config = WorkOrdersConfig.model_validate({"resolve_targets": {"P2": "12h"}})
    assert config.resolve_targets == {
        Priority.P1: timedelta(hours=4),
        Priority.P2: timedelta(hours=12),
        Priority.P3: timedelta(hours=72),
        Priority.P4: timedelta(hours=168),
    }


def test_resolved_or_cancelled_work_orders_never_breach(state_store: StateStore) -> None:
    clock = FakeClock()
    watch = SlaWatch(state_store, WorkOrdersConfig(), clock)
    cancelled = open_p1(state_store, clock)
    resolved = open_p1(state_store, clock)
    transition_work_order(state_store, cancelled.id, S.CANCELLED, by="duty", at=clock.advance(minutes=1), note="dup")
    transition_work_order(state_store, resolved.id, S.IN_PROGRESS, by="li", at=clock.advance(minutes=1))
    transition_work_order(state_store, resolved.id, S.RESOLVED, by="li", at=clock.advance(minutes=1), note="fixed")

    assert watch.check(clock.advance(days=30)) == []
    assert RESPONSE_BREACHED not in kinds(state_store, cancelled) + kinds(state_store, resolved)
