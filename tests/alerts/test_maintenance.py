"""Preventive maintenance plans: calendar and meter plans opening work orders, on real SQLite state and telemetry."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from facmon.alerts.maintenance import MaintenancePlanner
from facmon.alerts.notifications.channels import build_notifiers
from facmon.config.facility import FacilityConfig
from facmon.config.loader import parse_config
from facmon.config.registry import DeviceRegistry
from facmon.config.storage import TelemetryStorageConfig
from facmon.facility.model import (
    Category,
    MaintenanceOccurrence,
    Priority,
    Reading,
    Scalar,
    WorkOrder,
    WorkOrderSource,
    WorkOrderStatus,
)
from facmon.facility.state import StateStore
from facmon.ingest.errors import TelemetryStoreError
from facmon.ingest.storage import TelemetryStore, open_telemetry_store

SHANGHAI = ZoneInfo("Asia/Shanghai")
BERLIN = ZoneInfo("Europe/Berlin")

DEVICES = """
sites:
  - id: riverside
    buildings:
      - id: A
        devices:
          - {id: pump-1, type: pump, name: Booster pump 1, location: B1 pump room}
          - {id: pump-2, type: pump, name: Booster pump 2, location: B1 pump room}
          - {id: lift-1, type: elevator, name: Lift 1}
          - {id: lift-2, type: elevator, name: Lift 2}
notifications:
  channels:
    duty-log: {type: console, language: en}
    duty-zh: {type: console, language: zh}
"""

WEEKLY = """
    - id: pump-room-round
      title: Pump room round
      devices: pump-1
      calendar: {every: week, day: mon, at: "09:00", ahead: 2d}
      team: maintenance
      description: Check seals, vibration and the pressure set point.
"""


class Facility:
    """A facility with a state store and a telemetry store in a tmp dir, and planners over them."""

    def __init__(self, tmp_path: Path, plans: str, timezone: str = "Asia/Shanghai") -> None:
        self.tmp_path = tmp_path
        self.config: FacilityConfig = parse_config(
            f"timezone: {timezone}\n{DEVICES}\nmaintenance:\n  plans:\n{plans}", env={}
        )
        self.registry = DeviceRegistry.from_config(self.config)
        self.store = StateStore.open(self.state_url)
        self.telemetry: TelemetryStore = open_telemetry_store(
            TelemetryStorageConfig(path=tmp_path / "telemetry.db"), self.registry
        )

    @property
    def state_url(self) -> str:
        return f"sqlite:///{self.tmp_path / 'state.db'}"

    def planner(self, store: StateStore | None = None, telemetry: TelemetryStore | None = None) -> MaintenancePlanner:
        return MaintenancePlanner(
            self.config.maintenance,
            self.registry,
            store or self.store,
            telemetry or self.telemetry,
            self.config.tz,
            build_notifiers(self.config.notifications),
        )

    def report(self, device_id: str, at: datetime, **fields: Scalar) -> None:
        self.telemetry.write([Reading(device_id, ms(at), dict(fields))])

    def close(self) -> None:
        self.telemetry.close()
        self.store.close()


@pytest.fixture
def facilities(tmp_path: Path) -> Iterator[list[Facility]]:
    made: list[Facility] = []
    yield made
    for facility in made:
        facility.close()


@pytest.fixture
def facility(tmp_path: Path, facilities: list[Facility]):
    """A facility with the given plans (YAML list items), in Asia/Shanghai unless told."""

    def make(plans: str, timezone: str = "Asia/Shanghai") -> Facility:
        made = Facility(tmp_path, plans, timezone)
        facilities.append(made)
        return made

    return make


def sh(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=SHANGHAI)


def berlin(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=BERLIN)


def ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def local(order: WorkOrder, tz: ZoneInfo = SHANGHAI) -> str:
    assert order.due_at is not None
    return order.due_at.astimezone(tz).strftime("%Y-%m-%d %H:%M")


# -- calendar plans ---------------------------------------------------------------------------------------------


def test_weekly_round_opens_its_work_order_ahead_of_the_due_time_once(facility) -> None:
    f = facility(WEEKLY)
    planner = f.planner()

    assert planner.check(sh(2026, 11, 18, 10, 0)) == []  # Wednesday: Monday the 23rd is 5 days off
    assert planner.check(sh(2026, 11, 21, 8, 59)) == []  # a minute before the 2 days ahead
    [order] = planner.check(sh(2026, 11, 21, 9, 0))  # Saturday 09:00, 2 days before Monday 09:00

    assert order.number == "WO-20261121-0001"
    assert order.due_at == datetime(2026, 11, 23, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai
    assert order.created_at == sh(2026, 11, 21, 9, 0)
    assert (order.title, order.source, order.category, order.priority, order.team, order.status) == (
        "Pump room round: Booster pump 1",
        WorkOrderSource.PREVENTIVE,
        Category.WATER,
        Priority.P4,
        "maintenance",
        WorkOrderStatus.OPEN,
    )
    assert (order.device_id, order.site, order.location) == ("pump-1", "riverside", "riverside / A / B1 pump room")
    assert order.description == (
        "Check seals, vibration and the pressure set point.\nMaintenance plan pump-room-round: Due 2026-11-23 09:00."
    )
    assert [e.kind for e in f.store.work_order_events(order.id)] == ["opened"]
    occurrence = f.store.last_maintenance_occurrence("pump-room-round", "pump-1")
    assert occurrence is not None
    assert (occurrence.due_key, occurrence.due_at, occurrence.work_order_id) == (
        "2026-11-23T09:00",
        order.due_at,
        order.id,
    )

    # Again, later, after a restart, from a second instance on the same database: nothing more.
    assert planner.check(sh(2026, 11, 21, 9, 0)) == []
    assert planner.check(sh(2026, 11, 22, 18, 0)) == []
    assert f.planner().check(sh(2026, 11, 21, 9, 10)) == []
    other = StateStore.open(f.state_url)
    try:
        assert f.planner(store=other).check(sh(2026, 11, 23, 8, 0)) == []
    finally:
        other.close()
    assert f.store.list_work_orders().total == 1

    # The next week's opens two days before the next Monday.
    assert planner.check(sh(2026, 11, 28, 8, 59)) == []
    [following] = planner.check(sh(2026, 11, 28, 9, 0))
    assert (following.number, local(following)) == ("WO-20261128-0001", "2026-11-30 09:00")
    assert f.store.list_work_orders().total == 2


class ReadBeforeTheOtherCommitted(StateStore):
    """A second instance's view of the state: it looked for recorded occurrences before the first one recorded."""

    def last_maintenance_occurrence(self, plan: str, device_id: str) -> MaintenanceOccurrence | None:
        return None


def test_a_second_instance_checking_at_the_same_time_opens_nothing(facility) -> None:
    f = facility(WEEKLY)
    [order] = f.planner().check(sh(2026, 11, 21, 9, 0))
    other = ReadBeforeTheOtherCommitted.open(f.state_url)
    try:
        # It comes to the same due time; recording it finds it recorded, so no second work order.
        assert f.planner(store=other).check(sh(2026, 11, 21, 9, 0)) == []
    finally:
        other.close()
    assert [o.id for o in f.store.list_work_orders().items] == [order.id]
    assert f.store.list_notifications().total == 2


def test_news_of_each_work_order_is_queued_for_every_channel(facility) -> None:
    f = facility(WEEKLY)
    [order] = f.planner().check(sh(2026, 11, 21, 9, 0))

    queued = f.store.list_notifications().items
    assert sorted((n.channel, n.language, n.kind, n.ref) for n in queued) == [
        ("duty-log", "en", "work_order_opened", order.number),
        ("duty-zh", "zh", "work_order_opened", order.number),
    ]
    [english] = [n for n in queued if n.language == "en"]
    assert english.subject == "WO-20261121-0001 [P4] Pump room round: Booster pump 1"
    assert "respond by 2026-11-23 09:00" in english.body

    f.planner().check(sh(2026, 11, 21, 9, 30))  # nothing new, nothing queued
    assert f.store.list_notifications().total == 2


def test_monthly_on_the_last_day_follows_the_length_of_the_month(facility) -> None:
    f = facility(
        """
    - id: lift-monthly
      title: Monthly lift inspection
      devices: lift-1
      calendar: {every: month, day: last, at: "10:00", ahead: 3d}
      priority: P3
      team: lift-contractor
"""
    )
    planner = f.planner()
    assert planner.check(sh(2028, 2, 20, 12, 0)) == []
    assert planner.check(sh(2028, 2, 26, 9, 59)) == []
    [february] = planner.check(sh(2028, 2, 26, 10, 0))  # 2028 is a leap year: due the 29th
    assert (local(february), february.priority, february.category, february.team) == (
        "2028-02-29 10:00",
        Priority.P3,
        Category.ELEVATOR,
        "lift-contractor",
    )
    assert planner.check(sh(2028, 3, 28, 9, 59)) == []
    [march] = planner.check(sh(2028, 3, 28, 10, 0))
    assert local(march) == "2028-03-31 10:00"
    [april] = planner.check(sh(2028, 4, 27, 10, 0))
    assert local(april) == "2028-04-30 10:00"


def test_yearly_plan_is_due_on_its_day_each_year(facility) -> None:
    f = facility(
        """
    - id: fire-pump-annual
      title: Annual fire pump test
      devices: pump-2
      calendar: {every: year, day: "03-15", at: "08:30", ahead: 14d}
      priority: P3
"""
    )
    planner = f.planner()
    assert planner.check(sh(2026, 5, 1, 12, 0)) == []  # a new plan does not back-fill the 15 March just past
    assert planner.check(sh(2027, 3, 1, 8, 29)) == []
    [order] = planner.check(sh(2027, 3, 1, 8, 30))
    assert local(order) == "2027-03-15 08:30"
    assert planner.check(sh(2027, 12, 31, 12, 0)) == []
    [next_year] = planner.check(sh(2028, 3, 1, 8, 30))
    assert local(next_year) == "2028-03-15 08:30"


def test_due_times_missed_while_down_open_one_work_order_for_the_latest(facility) -> None:
    f = facility(WEEKLY)
    planner = f.planner()
    [first] = planner.check(sh(2026, 11, 21, 9, 0))
    assert local(first) == "2026-11-23 09:00"

    # Down from then until Wednesday 16 December: 30 November, 7 and 14 December went by unopened.
    [late] = f.planner().check(sh(2026, 12, 16, 12, 0))
    assert local(late) == "2026-12-14 09:00"
    assert late.description is not None
    assert "Due 2026-12-14 09:00. 2 earlier due dates were missed while facmon was not running." in late.description
    assert planner.check(sh(2026, 12, 16, 12, 10)) == []

    # Then on as usual: Monday the 21st opens on Saturday the 19th.
    assert planner.check(sh(2026, 12, 19, 8, 59)) == []
    [usual] = planner.check(sh(2026, 12, 19, 9, 0))
    assert local(usual) == "2026-12-21 09:00"
    assert usual.description is not None and "missed" not in usual.description
    assert f.store.list_work_orders().total == 3


def test_a_work_order_opened_at_its_due_time_is_not_counted_as_missed(facility) -> None:
    f = facility(
        """
    - id: lift-daily
      title: Daily lift check
      devices: lift-1
      calendar: {every: day, at: "07:00", ahead: 0s}
"""
    )
    planner = f.planner()
    [first] = planner.check(sh(2026, 11, 21, 7, 0))
    # The next check is a few minutes late: still one due time, opened, not missed.
    [second] = planner.check(sh(2026, 11, 22, 7, 4))
    assert (local(first), local(second)) == ("2026-11-21 07:00", "2026-11-22 07:00")
    assert second.description is not None and "missed" not in second.description


def test_with_ahead_longer_than_the_period_each_upcoming_due_time_gets_its_own_work_order(facility) -> None:
    f = facility(
        """
    - id: lift-daily
      title: Daily lift check
      devices: lift-1
      calendar: {every: day, at: "09:00", ahead: 36h}
"""
    )
    orders = f.planner().check(sh(2026, 11, 21, 8, 0))
    # 09:00 today and tomorrow open now; the day after opens at 21:00 today.
    assert [local(o) for o in orders] == ["2026-11-21 09:00", "2026-11-22 09:00"]
    assert all("missed" not in (o.description or "") for o in orders)
    assert f.planner().check(sh(2026, 11, 21, 20, 59)) == []
    [third] = f.planner().check(sh(2026, 11, 21, 21, 0))
    assert local(third) == "2026-11-23 09:00"


def test_daily_plan_stays_at_nine_local_across_the_change_to_summer_time(facility) -> None:
    f = facility(
        """
    - id: boiler-round
      title: Morning plant round
      devices: pump-1
      calendar: {every: day, at: "09:00", ahead: 1h}
""",
        timezone="Europe/Berlin",
    )
    planner = f.planner()
    assert planner.check(berlin(2026, 3, 28, 7, 0)) == []
    [saturday] = planner.check(berlin(2026, 3, 28, 8, 0))
    # Sunday 29 March: clocks go from 02:00 CET to 03:00 CEST.
    assert planner.check(berlin(2026, 3, 29, 7, 59)) == []
    [sunday] = planner.check(berlin(2026, 3, 29, 8, 0))
    [monday] = planner.check(berlin(2026, 3, 30, 8, 0))

    assert [o.due_at for o in (saturday, sunday, monday)] == [
        datetime(2026, 3, 28, 8, 0, tzinfo=UTC),  # 09:00 CET
        datetime(2026, 3, 29, 7, 0, tzinfo=UTC),  # 09:00 CEST
        datetime(2026, 3, 30, 7, 0, tzinfo=UTC),
    ]
    assert [local(o, BERLIN) for o in (saturday, sunday, monday)] == [
        "2026-03-28 09:00",
        "2026-03-29 09:00",
        "2026-03-30 09:00",
    ]
    occurrence = f.store.last_maintenance_occurrence("boiler-round", "pump-1")
    assert occurrence is not None and occurrence.due_key == "2026-03-30T09:00"


def test_a_time_of_day_that_comes_twice_when_clocks_go_back_opens_once(facility) -> None:
    f = facility(
        """
    - id: night-round
      title: Night round
      devices: pump-1
      calendar: {every: day, at: "02:30", ahead: 1h}
""",
        timezone="Europe/Berlin",
    )
    planner = f.planner()
    assert planner.check(berlin(2026, 10, 24, 12, 0)) == []
    [first] = planner.check(berlin(2026, 10, 25, 1, 30))
    assert first.due_at == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 CEST
    # 02:30 CET, an hour later, is the same 02:30 of the same day.
    assert planner.check(datetime(2026, 10, 25, 1, 0, tzinfo=UTC)) == []
    assert planner.check(datetime(2026, 10, 25, 1, 45, tzinfo=UTC)) == []
    [next_day] = planner.check(berlin(2026, 10, 26, 1, 30))
    assert local(next_day, BERLIN) == "2026-10-26 02:30"
    assert next_day.description is not None and "missed" not in next_day.description


# -- meter plans ------------------------------------------------------------------------------------------------

LIFT_TRIPS = """
    - id: lift-50k
      title: Lift service
      device_types: elevator
      meter: {field: trips, every: 50000, ahead: 2000, due_within: 14d}
      priority: P3
      team: lift-contractor
"""


def test_lift_trips_open_a_work_order_ahead_of_each_mark_after_a_baseline(facility) -> None:
    f = facility(LIFT_TRIPS)
    planner = f.planner()
    t0 = sh(2026, 11, 21, 10, 0)
    f.report("lift-1", t0, state="idle", trips=123_456)

    # First sight: 50k and 100k are behind it; recorded as the baseline, without a work order.
    assert planner.check(t0 + timedelta(minutes=1)) == []
    baseline = f.store.last_maintenance_occurrence("lift-50k", "lift-1")
    assert baseline is not None
    assert (baseline.due_key, baseline.meter_value, baseline.work_order_id) == ("m2", 123_456, None)
    assert f.store.last_maintenance_occurrence("lift-50k", "lift-2") is None  # never reported

    f.report("lift-1", t0 + timedelta(days=10), state="idle", trips=147_999)
    assert planner.check(t0 + timedelta(days=10, minutes=1)) == []

    f.report("lift-1", t0 + timedelta(days=11), state="idle", trips=148_000)
    now = t0 + timedelta(days=11, minutes=1)
    [order] = planner.check(now)
    assert (order.title, order.source, order.category, order.priority, order.team) == (
        "Lift service: Lift 1",
        WorkOrderSource.PREVENTIVE,
        Category.ELEVATOR,
        Priority.P3,
        "lift-contractor",
    )
    assert order.due_at == now + timedelta(days=14)
    assert (
        order.description
        == "Maintenance plan lift-50k: trips at 148,000: the service at 150,000 (every 50,000) is due."
    )
    occurrence = f.store.last_maintenance_occurrence("lift-50k", "lift-1")
    assert occurrence is not None
    assert (occurrence.due_key, occurrence.meter_value, occurrence.work_order_id) == ("m3", 148_000, order.id)

    # Not again for the same mark: past it, after a restart.
    f.report("lift-1", t0 + timedelta(days=15), state="idle", trips=150_500)
    assert planner.check(t0 + timedelta(days=15, minutes=1)) == []
    assert f.planner().check(t0 + timedelta(days=15, minutes=2)) == []

    f.report("lift-1", t0 + timedelta(days=40), state="idle", trips=198_000)
    [next_mark] = planner.check(t0 + timedelta(days=40, minutes=1))
    assert next_mark.description is not None and "the service at 200,000" in next_mark.description

    # Silent for a long while, then past two marks: one work order for the higher.
    f.report("lift-1", t0 + timedelta(days=120), state="idle", trips=305_000)
    [jump] = planner.check(t0 + timedelta(days=120, minutes=1))
    assert jump.description is not None
    assert "the service at 300,000" in jump.description
    assert "1 earlier mark passed without a work order" in jump.description
    assert f.store.list_work_orders().total == 3
    assert f.store.list_notifications().total == 6  # two channels each


def test_a_lift_first_seen_within_ahead_of_its_next_mark_opens_at_once(facility) -> None:
    f = facility(LIFT_TRIPS)
    t0 = sh(2026, 11, 21, 10, 0)
    f.report("lift-2", t0, state="running", trips=49_200)
    [order] = f.planner().check(t0)
    assert order.device_id == "lift-2"
    assert order.description is not None and "the service at 50,000" in order.description
    assert f.store.last_maintenance_occurrence("lift-50k", "lift-1") is None


PUMP_HOURS = """
    - id: pump-2h
      title: Pump service
      device_types: pump
      meter: {field: run_hours, every: 2, ahead: 0.5, due_within: 7d}
"""


def test_pump_run_hours_are_added_up_from_pump_running_and_continued_after_a_restart(facility) -> None:
    f = facility(PUMP_HOURS)
    t0 = sh(2026, 11, 21, 0, 0)

    def minutes(m: float) -> datetime:
        return t0 + timedelta(minutes=m)

    for m, running in [(0, True), (10, True), (20, False), (30, False), (40, True), (100, True), (110, False)]:
        f.report("pump-1", minutes(m), pressure_bar=4.0, pump_running=running)
    # 0-10 and 10-20 running: 20 min; 40-100 running but an hour without readings: 15 min; 100-110: 10 min.
    assert f.planner().check(minutes(120)) == []
    assert f.store.meter("pump-1", "run_hours") == (0.75, ms(minutes(110)))
    baseline = f.store.last_maintenance_occurrence("pump-2h", "pump-1")
    assert baseline is not None and (baseline.due_key, baseline.meter_value) == ("m0", 0.75)
    # pump-2 never reported: no meter, no occurrence.
    assert f.store.meter("pump-2", "run_hours") is None
    assert f.store.last_maintenance_occurrence("pump-2h", "pump-2") is None

    # After a restart: counted on from 110 (not running till 120), then 45 min running: 1.5 h, within 0.5 of 2.
    for m in (120, 135, 150, 165):
        f.report("pump-1", minutes(m), pump_running=True)
    planner = f.planner()
    [order] = planner.check(minutes(170))
    assert f.store.meter("pump-1", "run_hours") == (1.5, ms(minutes(165)))
    assert order.description == "Maintenance plan pump-2h: run_hours at 1.5: the service at 2 (every 2) is due."
    assert order.due_at == minutes(170) + timedelta(days=7)
    assert (order.category, order.title) == (Category.WATER, "Pump service: Booster pump 1")
    occurrence = f.store.last_maintenance_occurrence("pump-2h", "pump-1")
    assert occurrence is not None
    assert (occurrence.due_key, occurrence.meter_value, occurrence.work_order_id) == ("m1", 1.5, order.id)

    # Nothing new: nothing added, nothing opened.
    assert planner.check(minutes(180)) == []
    assert f.planner().check(minutes(190)) == []
    assert f.store.meter("pump-1", "run_hours") == (1.5, ms(minutes(165)))


def test_run_hours_count_readings_over_more_than_a_day_once(facility) -> None:
    f = facility(PUMP_HOURS)
    t0 = sh(2026, 11, 20, 23, 0)
    # Running, a reading every 15 minutes, for 50 hours: the count crosses days and checks.
    for i in range(201):
        f.report("pump-1", t0 + timedelta(minutes=15 * i), pump_running=True)
    planner = f.planner()
    assert planner.check(t0 + timedelta(hours=30)) == []  # first sight at 30 h: the 30-hour mark is behind
    assert f.store.meter("pump-1", "run_hours") == (30.0, ms(t0 + timedelta(hours=30)))
    [order] = planner.check(t0 + timedelta(hours=60))
    assert f.store.meter("pump-1", "run_hours") == (50.0, ms(t0 + timedelta(hours=50)))
    assert order.description is not None and "run_hours at 50: the service at 50 (every 2)" in order.description
    occurrence = f.store.last_maintenance_occurrence("pump-2h", "pump-1")
    assert occurrence is not None and occurrence.due_key == "m25"


def test_a_plan_over_devices_that_never_reported_opens_nothing(facility) -> None:
    f = facility(LIFT_TRIPS + PUMP_HOURS)
    assert f.planner().check(sh(2026, 11, 21, 10, 0)) == []
    for device in ("lift-1", "lift-2", "pump-1", "pump-2"):
        assert f.store.last_maintenance_occurrence("lift-50k", device) is None
        assert f.store.last_maintenance_occurrence("pump-2h", device) is None
    assert f.store.list_work_orders().total == 0


class BrokenFor:
    """A telemetry store that fails for one device."""

    def __init__(self, store: TelemetryStore, device_id: str) -> None:
        self._store = store
        self._device_id = device_id

    def latest(self, device_id: str) -> tuple[int, dict[str, Scalar]] | None:
        if device_id == self._device_id:
            raise TelemetryStoreError("disk on fire")
        return self._store.latest(device_id)

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)


def test_a_failing_device_is_logged_and_the_others_go_on(facility, caplog: pytest.LogCaptureFixture) -> None:
    f = facility(LIFT_TRIPS + WEEKLY)
    t0 = sh(2026, 11, 21, 9, 0)
    f.report("lift-1", t0, state="idle", trips=99_000)
    f.report("lift-2", t0, state="idle", trips=99_000)
    with caplog.at_level(logging.INFO, logger="facmon.alerts.maintenance"):
        orders = f.planner(telemetry=BrokenFor(f.telemetry, "lift-1")).check(t0)
    assert sorted(o.title for o in orders) == ["Lift service: Lift 2", "Pump room round: Booster pump 1"]
    [failure] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert failure.getMessage() == "maintenance plan lift-50k failed for lift-1"
    assert failure.exc_info is not None
    opened = [r.getMessage() for r in caplog.records if r.getMessage().startswith("work order")]
    assert len(opened) == 2
