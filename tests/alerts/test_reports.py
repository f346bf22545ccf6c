"""The monthly report over seeded history, on SQLite and PostgreSQL state stores."""

from __future__ import annotations

from datetime import datetime, timedelta
from itertools import count
from zoneinfo import ZoneInfo

import pytest

from facmon.alerts.reports import (
    Acknowledgement,
    DeviceFaults,
    DeviceTypeFaults,
    Offender,
    Resolution,
    SeverityFaults,
    SlaCompliance,
    monthly_report,
    parse_month,
)
from facmon.config.registry import DeviceRegistry
from facmon.facility.model import (
    Alarm,
    AlarmEvent,
    AlarmState,
    Category,
    Device,
    DeviceType,
    Priority,
    Severity,
    WorkOrder,
    WorkOrderSource,
    WorkOrderStatus,
)
from facmon.facility.state import StateStore

SHANGHAI = ZoneInfo("Asia/Shanghai")
REGISTRY = DeviceRegistry(
    [
        Device("pump-1", DeviceType.PUMP, "riverside", "A", "Booster pump 1"),
        Device("smoke-A-01", DeviceType.SMOKE, "riverside", "A", "Smoke detector A2F lobby"),
        Device("lift-B1", DeviceType.ELEVATOR, "riverside", "B", "Lift B1"),
        Device("panel-1", DeviceType.POWER, "riverside", "A", "LV panel 1"),
    ]
)
_numbers = count(1)


def local(month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    """A time in Shanghai in 2026 (December's first day is in 2026 too)."""
    return datetime(2026, month, day, hour, minute, tzinfo=SHANGHAI)


def raise_alarm(
    store: StateStore,
    device_id: str,
    rule: str,
    severity: Severity,
    at: datetime,
    *,
    acks_after: tuple[int, ...] = (),
    suppressed: bool = False,
) -> None:
    """An alarm raised at `at`, acknowledged `acks_after` minutes later (an alarm can come back and be acked again)."""
    with store.begin() as tx:
        alarm = tx.insert_alarm(
            Alarm(
                0,
                rule,
                device_id,
                "riverside",
                severity,
                AlarmState.ACTIVE_UNACKED,
                at,
                1.0,
                rule,
                suppressed=suppressed,
            )
        )
        tx.add_alarm_event(AlarmEvent(alarm.id, at, "raised", AlarmState.ACTIVE_UNACKED, severity))
        for minutes in acks_after:
            acked = at + timedelta(minutes=minutes)
            tx.add_alarm_event(AlarmEvent(alarm.id, acked, "acknowledged", AlarmState.ACTIVE_ACKED, severity, "op"))


def open_order(
    store: StateStore,
    priority: Priority,
    category: Category,
    created: datetime,
    *,
    due_in: timedelta,
    responded_after: int | None = None,
    resolved_after: int | None = None,
    status: WorkOrderStatus = WorkOrderStatus.OPEN,
) -> None:
    """A work order opened at `created`, first taken up and resolved so many minutes later."""
    with store.begin() as tx:
        tx.insert_work_order(
            WorkOrder(
                id=0,
                number=f"WO-20261101-{next(_numbers):04d}",
                title="seeded",
                device_id=None,
                site="riverside",
                category=category,
                priority=priority,
                status=status,
                source=WorkOrderSource.MANUAL,
                created_at=created,
                due_at=created + due_in,
                first_response_at=None if responded_after is None else created + timedelta(minutes=responded_after),
                resolved_at=None if resolved_after is None else created + timedelta(minutes=resolved_after),
            )
        )


@pytest.fixture
def seeded(state_store: StateStore) -> StateStore:
    """November 2026 in Shanghai, with what happened just before and just after it."""
    s = state_store
    # In November: the first moment of the month counts, as does 23:30 on its last day (15:30 UTC).
    raise_alarm(s, "pump-1", "pump-pressure-low", Severity.MAJOR, local(11, 1, 0, 0), acks_after=(10,))
    raise_alarm(s, "pump-1", "pump-pressure-low", Severity.MAJOR, local(11, 3, 2, 0), acks_after=(6, 30))
    raise_alarm(s, "pump-1", "pump-pressure-low", Severity.CRITICAL, local(11, 10, 10, 0), acks_after=(3,))
    raise_alarm(s, "smoke-A-01", "smoke-alarm", Severity.CRITICAL, local(11, 30, 23, 30))
    raise_alarm(s, "old-pump", "supply-interruption", Severity.MINOR, local(11, 15, 8, 0))  # since removed
    # Not faults of November: suppressed, a minute before it, and 00:30 on 1 December (still 30 November in UTC).
    raise_alarm(s, "lift-B1", "elevator-entrapment", Severity.CRITICAL, local(11, 12, 9, 0), suppressed=True)
    raise_alarm(s, "panel-1", "voltage-dip-swell", Severity.MAJOR, local(10, 31, 23, 59), acks_after=(1,))
    raise_alarm(s, "lift-B1", "elevator-fault", Severity.MAJOR, local(12, 1, 0, 30), acks_after=(1,))

    p1, p2, p3, p4 = (timedelta(minutes=5), timedelta(minutes=30), timedelta(hours=4), timedelta(hours=24))
    working = WorkOrderStatus.IN_PROGRESS
    open_order(s, Priority.P1, Category.FIRE, local(11, 30, 23, 30), due_in=p1, responded_after=4, resolved_after=64)
    open_order(s, Priority.P2, Category.WATER, local(11, 3, 2, 1), due_in=p2, responded_after=45, resolved_after=120)
    open_order(s, Priority.P2, Category.WATER, local(11, 10, 10, 1), due_in=p2, responded_after=10, status=working)
    open_order(s, Priority.P3, Category.ELEVATOR, local(11, 20, 9, 0), due_in=p3)  # nobody came: overdue
    cancelled = WorkOrderStatus.CANCELLED
    open_order(s, Priority.P4, Category.GENERAL, local(11, 29, 9, 0), due_in=p4, status=cancelled)  # not judged
    open_order(s, Priority.P4, Category.GENERAL, local(11, 30, 22, 0), due_in=p4)  # due after the report: pending
    open_order(s, Priority.P1, Category.FIRE, local(12, 1, 0, 30), due_in=p1, responded_after=2, resolved_after=30)
    open_order(s, Priority.P1, Category.FIRE, local(10, 31, 23, 0), due_in=p1, responded_after=9, resolved_after=50)
    return s


NOW = local(12, 1, 9, 0)


def test_faults_are_counted_per_device_type_device_and_severity_within_the_month(seeded: StateStore) -> None:
    report = monthly_report(seeded, REGISTRY, "2026-11", SHANGHAI, now=NOW)
    assert (report.month, report.start, report.end) == ("2026-11", local(11, 1), local(12, 1))
    assert report.generated_at.isoformat() == "2026-12-01T09:00:00+08:00"
    assert report.faults == 5
    assert report.by_device_type == (
        DeviceTypeFaults("pump", 3),
        DeviceTypeFaults("smoke", 1),
        DeviceTypeFaults("unknown", 1),
    )
    assert report.by_device == (
        DeviceFaults("pump-1", "pump", "Booster pump 1", "riverside", "A", 3),
        DeviceFaults("old-pump", "unknown", None, "riverside", None, 1),
        DeviceFaults("smoke-A-01", "smoke", "Smoke detector A2F lobby", "riverside", "A", 1),
    )
    assert report.by_severity == (
        SeverityFaults(Severity.CRITICAL, 2),
        SeverityFaults(Severity.MAJOR, 2),
        SeverityFaults(Severity.MINOR, 1),
        SeverityFaults(Severity.WARNING, 0),
    )
    assert report.top_devices == (
        Offender("pump-1", 3, "Booster pump 1"),
        Offender("old-pump", 1, None),
        Offender("smoke-A-01", 1, "Smoke detector A2F lobby"),
    )
    assert report.top_rules == (
        Offender("pump-pressure-low", 3),
        Offender("smoke-alarm", 1),
        Offender("supply-interruption", 1),
    )


def test_mtta_is_to_the_first_acknowledgement_of_the_acknowledged(seeded: StateStore) -> None:
    report = monthly_report(seeded, REGISTRY, "2026-11", SHANGHAI, now=NOW)
    # 10, 6 (not the second ack at 30) and 3 minutes; the smoke alarm and the removed pump's were never acked.
    assert report.mtta == Acknowledgement(acknowledged=3, unacknowledged=2, mean_minutes=6.3)


def test_mttr_is_over_the_resolved_work_orders_opened_in_the_month(seeded: StateStore) -> None:
    mttr = monthly_report(seeded, REGISTRY, "2026-11", SHANGHAI, now=NOW).mttr
    assert mttr.overall == Resolution("all", work_orders=6, resolved=2, mean_minutes=92.0)
    assert mttr.by_category == (
        Resolution("water", 2, 1, 120.0),
        Resolution("power", 0, 0, None),
        Resolution("elevator", 1, 0, None),
        Resolution("fire", 1, 1, 64.0),
        Resolution("general", 2, 0, None),
    )
    assert mttr.by_priority == (
        Resolution("P1", 1, 1, 64.0),
        Resolution("P2", 2, 1, 120.0),
        Resolution("P3", 1, 0, None),
        Resolution("P4", 2, 0, None),
    )


def test_sla_counts_met_missed_overdue_and_pending_per_priority(seeded: StateStore) -> None:
    sla = monthly_report(seeded, REGISTRY, "2026-11", SHANGHAI, now=NOW).sla
    assert sla.overall == SlaCompliance("all", met=2, missed=1, overdue=1, pending=1, compliance_pct=50.0)
    assert sla.by_priority == (
        SlaCompliance("P1", 1, 0, 0, 0, 100.0),
        SlaCompliance("P2", 1, 1, 0, 0, 50.0),
        SlaCompliance("P3", 0, 0, 1, 0, 0.0),
        SlaCompliance("P4", 0, 0, 0, 1, None),
    )
    # A day later the P4 is past its due time too.
    later = monthly_report(seeded, REGISTRY, "2026-11", SHANGHAI, now=NOW + timedelta(days=1)).sla
    assert (later.overall.overdue, later.overall.pending, later.overall.compliance_pct) == (2, 0, 40.0)


def test_the_neighbouring_months_get_what_november_left_out(seeded: StateStore) -> None:
    december = monthly_report(seeded, REGISTRY, "2026-12", SHANGHAI, now=NOW)
    assert [(d.device_id, d.faults) for d in december.by_device] == [("lift-B1", 1)]
    assert december.mtta == Acknowledgement(1, 0, 1.0)
    assert december.mttr.overall == Resolution("all", 1, 1, 30.0)
    october = monthly_report(seeded, REGISTRY, "2026-10", SHANGHAI, now=NOW)
    assert [(d.device_id, d.faults) for d in october.by_device] == [("panel-1", 1)]
    assert (october.mttr.overall.mean_minutes, october.sla.overall.missed) == (50.0, 1)


def test_an_empty_month_is_a_report_of_zeros(state_store: StateStore) -> None:
    report = monthly_report(state_store, REGISTRY, "2026-02", SHANGHAI, now=NOW)
    assert (report.faults, report.by_device, report.top_devices, report.top_rules) == (0, (), (), ())
    assert report.mtta == Acknowledgement(0, 0, None)
    assert report.mttr.overall == Resolution("all", 0, 0, None)
    assert report.sla.overall == SlaCompliance("all", 0, 0, 0, 0, None)


def test_december_ends_at_the_new_year_in_the_facility_s_time_zone() -> None:
    december = parse_month("2026-12", SHANGHAI)
    assert (december.start.isoformat(), december.end.isoformat()) == (
        "2026-12-01T00:00:00+08:00",
        "2027-01-01T00:00:00+08:00",
    )


@pytest.mark.parametrize("month", ["2026-13", "2026-1", "26-11", "2026-11-01", "november", "", "1969-12"])
def test_anything_but_a_month_is_refused(month: str) -> None:
    with pytest.raises(ValueError, match=r"month|1970"):
        parse_month(month, SHANGHAI)
