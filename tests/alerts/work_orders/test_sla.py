"""SLA breaches of work orders, on SQLite and PostgreSQL, with the clock moved by hand."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

from facmon.alerts.work_orders.records import open_work_order, transition_work_order
from facmon.alerts.work_orders.sla import (
    ACKNOWLEDGE_BREACHED,
    ACKNOWLEDGED,
    RESOLVE_BREACHED,
    RESPONSE_BREACHED,
    SlaBreaches,
    SlaWatch,
    sla_breaches,
)
from facmon.config.work_orders import SlaTargets, WorkOrdersConfig
from facmon.facility.model import Category, Priority, WorkOrder, WorkOrderEvent, WorkOrderSource
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


def test_an_unacknowledged_work_order_breaches_its_acknowledge_target(state_store: StateStore) -> None:
    clock = FakeClock()
    config = WorkOrdersConfig(acknowledge_targets={Priority.P1: timedelta(minutes=2)})
    watch = SlaWatch(state_store, config, clock)
    late = open_p1(state_store, clock)
    acked = open_p1(state_store, clock)
    with state_store.begin() as tx:
        tx.add_work_order_event(WorkOrderEvent(acked.id, clock.now(), ACKNOWLEDGED, S.OPEN, "li.na", "via api"))
    assert watch.check(clock.advance(minutes=2)) == []
    [event] = watch.check(clock.advance(seconds=30))
    assert (event.work_order_id, event.kind) == (late.id, ACKNOWLEDGE_BREACHED)
    assert event.note == f"{late.number}: not acknowledged within 2m, 30s late"
    assert watch.check(clock.advance(minutes=1)) == []
    assert sla_breaches(state_store, clock.now() - timedelta(hours=1), clock.now()).acknowledge == 1


def test_targets_by_category_override_the_priority_s() -> None:
    config = WorkOrdersConfig.model_validate(
        {
            "acknowledge_targets": {"p1": "2m"},
            "sla": [
                {"category": "elevator", "resolve": "24h"},
                {"category": "elevator", "priority": "P2", "respond": "30m", "acknowledge": "5m"},
            ],
        }
    )
    assert config.targets(Category.WATER, Priority.P1) == SlaTargets(
        timedelta(minutes=2), timedelta(minutes=5), timedelta(hours=4)
    )
    assert config.targets(Category.ELEVATOR, Priority.P1) == SlaTargets(
        timedelta(minutes=2), timedelta(minutes=5), timedelta(hours=24)
    )
    assert config.targets(Category.ELEVATOR, Priority.P2) == SlaTargets(
        timedelta(minutes=5), timedelta(minutes=30), timedelta(hours=24)
    )
