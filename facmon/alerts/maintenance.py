"""Preventive maintenance: the plans of the `maintenance` section open work orders ahead of each due date or meter mark.

Each due date (or meter mark) of a plan for a device is recorded once, in the transaction that opens its work order:
a second check, a restart or a second service instance finds it recorded and opens nothing. A calendar plan's due
times are the fire times of a cron trigger in the facility's time zone; a meter plan is due at each multiple of
`every` of a lift's `trips` or of a pump's running hours, which facmon adds up itself from `pump_running`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

from facmon.alerts.notifications.notifier import Notifier
from facmon.alerts.work_orders.records import open_work_order, queue_work_order_opened
from facmon.config.maintenance import METERS, Calendar, MaintenanceConfig, Meter, Plan
from facmon.config.registry import DeviceRegistry
from facmon.facility.model import CATEGORY_OF_DEVICE_TYPE, Device, MaintenanceOccurrence, WorkOrder, WorkOrderSource
from facmon.facility.state import StateStore
from facmon.ingest.storage import Aggregate, Point, TelemetryStore

log = logging.getLogger(__name__)

RUN_HOURS = "run_hours"
# A gap between two `pump_running` readings counts as running for at most this long: an outage is not running time.
RUN_GAP_CAP = timedelta(minutes=15)
# Run hours are added up a day of readings at a time, so a long history is never read into memory at once.
_CHUNK_MS = 86_400_000
_HOUR_MS = 3_600_000


@dataclass(frozen=True, slots=True)
class _Due:
    """What a work order is opened for: its occurrence's key, when the work order is due, and why; a calendar
    occurrence's due time, or the meter value a meter occurrence was opened at, is recorded with it."""

    key: str
    due_at: datetime
    reason: str
    scheduled_at: datetime | None = None
    meter_value: float | None = None


class MaintenancePlanner:
    """Opens the work orders of preventive maintenance plans when they come due; `check` runs on the service's ticker.

    The notifiers are only read for their names and languages: the news of each work order is queued in its
    transaction, and the outbox (facmon.alerts.notifications.outbox) delivers it.
    """

    def __init__(
        self,
        config: MaintenanceConfig,
        registry: DeviceRegistry,
        store: StateStore,
        telemetry: TelemetryStore,
        tz: ZoneInfo,
        notifiers: Sequence[Notifier],
    ) -> None:
        self._config = config
        self._registry = registry
        self._store = store
        self._telemetry = telemetry
        self._tz = tz
        self._notifiers = notifiers
        self._triggers: dict[str, Any] = {
            plan.id: CronTrigger(timezone=tz, **plan.calendar.cron())
            for plan in config.plans
            if plan.calendar is not None
        }

    def check(self, now: datetime) -> list[WorkOrder]:
        """Open the work orders that have come due by `now` and are not yet recorded; the work orders opened."""
        opened: list[WorkOrder] = []
        for plan in self._config.plans:
            for device in self._registry:
                if not plan.covers(device):
                    continue
                try:
                    if plan.calendar is not None:
                        dues = self._calendar_dues(plan, plan.calendar, device, now)
                    elif plan.meter is not None:
                        dues = self._meter_dues(plan, plan.meter, device, now)
                    else:
                        dues = []
                    for due in dues:
                        order = self._open(plan, device, due, now)
                        if order is not None:
                            opened.append(order)
                except Exception:  # one plan or device failing must not stop the others
                    log.exception("maintenance plan %s failed for %s", plan.id, device.id)
        return opened

    # -- calendar ---------------------------------------------------------------------------------------------

    def _calendar_dues(self, plan: Plan, calendar: Calendar, device: Device, now: datetime) -> list[_Due]:
        """The due times whose work orders should be open by now: those already past as one (the latest), then
        each upcoming one within `ahead`."""
        trigger = self._triggers[plan.id]
        last = self._store.last_maintenance_occurrence(plan.id, device.id)
        if last is not None and last.due_at is not None:
            due = _fire_time(trigger, _just_after(last.due_at))
        else:
            # A new plan starts from now: it does not back-fill what was due before it existed.
            due = _fire_time(trigger, now)
        reached: list[datetime] = []
        while due is not None and now >= due - calendar.ahead:
            # When clocks go back, a time of day comes twice: its second coming is the occurrence already recorded.
            if last is None or self._key(due) != last.due_key:
                reached.append(due)
            due = _fire_time(trigger, _just_after(due))
        past = [d for d in reached if d < now]
        upcoming = [d for d in reached if d >= now]
        dues: list[datetime] = []
        missed = 0
        if past:
            # Down while several came and went: one work order for the latest, not one per missed date.
            dues.append(past[-1])
            missed = len(past) - 1
        dues += upcoming
        result: list[_Due] = []
        for i, due_time in enumerate(dues):
            local = due_time.astimezone(self._tz)
            reason = f"Due {local:%Y-%m-%d %H:%M}."
            if i == 0 and missed:
                were = "was" if missed == 1 else "were"
                reason += f" {missed} earlier due {_plural(missed, 'date')} {were} missed while facmon was not running."
            result.append(_Due(self._key(due_time), due_time, reason, scheduled_at=due_time))
        return result

    def _key(self, due_time: datetime) -> str:
        """A calendar occurrence's key: its due time in the facility's zone, to the minute."""
        return f"{due_time.astimezone(self._tz):%Y-%m-%dT%H:%M}"

    # -- meters -----------------------------------------------------------------------------------------------

    def _meter_dues(self, plan: Plan, meter: Meter, device: Device, now: datetime) -> list[_Due]:
        """The highest mark the meter is within `ahead` of, when it is above the last recorded one; on a device's
        first check, the mark below its value is recorded as done, so the marks it passed before open nothing."""
        if device.type is not METERS[meter.field]:
            return []
        value = self._run_hours(device, now) if meter.field == RUN_HOURS else self._trips(device)
        if value is None:
            return []  # never reported: nothing to go by
        last = self._store.last_maintenance_occurrence(plan.id, device.id)
        last_mark = _mark_of(last)
        if last_mark is None:
            last_mark = max(math.floor(value / meter.every), 0)
            with self._store.begin() as tx:
                tx.add_maintenance_occurrence(
                    MaintenanceOccurrence(plan.id, device.id, f"m{last_mark}", created_at=now, meter_value=value)
                )
            log.info(
                "maintenance plan %s: %s first seen at %s %s, counting from mark %s",
                plan.id,
                device.id,
                meter.field,
                _number(value),
                last_mark,
            )
        mark = math.floor((value + meter.ahead) / meter.every)
        if mark <= last_mark:
            return []
        reason = (
            f"{meter.field} at {_number(value)}: the service at {_number(mark * meter.every)} "
            f"(every {_number(meter.every)}) is due."
        )
        skipped = mark - last_mark - 1
        if skipped:
            reason += f" {skipped} earlier {_plural(skipped, 'mark')} passed without a work order."
        return [_Due(f"m{mark}", now + meter.due_within, reason, meter_value=value)]

    def _trips(self, device: Device) -> float | None:
        """A lift's cumulative trips, as it last reported them."""
        latest = self._telemetry.latest(device.id)
        trips = latest[1].get("trips") if latest is not None else None
        if isinstance(trips, bool) or not isinstance(trips, int | float):
            return None
        return float(trips)

    def _run_hours(self, device: Device, now: datetime) -> float | None:
        """A pump's running hours, added up from its `pump_running` readings since the last count and saved."""
        kept = self._store.meter(device.id, RUN_HOURS)
        stop_ms = _ms(now) + 1
        if kept is None:
            start_ms = self._first_reading_ms(device, stop_ms)
            if start_ms is None:
                return None
            hours, until_ms = 0.0, None
        else:
            hours, until_ms = kept
            start_ms = until_ms  # the reading there says whether the pump ran in the gap after it
        cap_ms = int(RUN_GAP_CAP.total_seconds() * 1000)
        running_ms = 0
        previous: Point | None = None
        for chunk_ms in range(start_ms, stop_ms, _CHUNK_MS):
            for point in self._telemetry.query(device.id, "pump_running", chunk_ms, min(chunk_ms + _CHUNK_MS, stop_ms)):
                if previous is not None and previous.value is True:
                    running_ms += min(point.ts_ms - previous.ts_ms, cap_ms)
                previous = point
        if previous is None or previous.ts_ms == until_ms:
            return None if kept is None else hours  # nothing new since the last count
        hours += running_ms / _HOUR_MS
        with self._store.begin() as tx:
            tx.save_meter(device.id, RUN_HOURS, hours, previous.ts_ms)
        return hours

    def _first_reading_ms(self, device: Device, stop_ms: int) -> int | None:
        """The start of the first day with a `pump_running` reading, or None if there is none."""
        days = self._telemetry.query(device.id, "pump_running", 0, stop_ms, every_ms=_CHUNK_MS, agg=Aggregate.COUNT)
        return days[0].ts_ms if days else None

    # -- work orders ------------------------------------------------------------------------------------------

    def _open(self, plan: Plan, device: Device, due: _Due, now: datetime) -> WorkOrder | None:
        """Record the occurrence and open its work order in one transaction; None when it was recorded before."""
        with self._store.begin() as tx:
            occurrence = MaintenanceOccurrence(
                plan.id, device.id, due.key, created_at=now, due_at=due.scheduled_at, meter_value=due.meter_value
            )
            if not tx.add_maintenance_occurrence(occurrence):
                return None
            order = open_work_order(
                tx,
                title=f"{plan.title}: {device.name}",
                category=CATEGORY_OF_DEVICE_TYPE[device.type],
                priority=plan.priority,
                source=WorkOrderSource.PREVENTIVE,
                at=now,
                tz=self._tz,
                response_target=None,
                due_at=due.due_at,
                device=device,
                description="\n".join(filter(None, [plan.description, f"Maintenance plan {plan.id}: {due.reason}"])),
                team=plan.team,
            )
            tx.set_maintenance_work_order(plan.id, device.id, due.key, order.id)
            queue_work_order_opened(tx, order, self._notifiers, self._tz)
        log.info("work order %s opened by maintenance plan %s for %s (%s)", order.number, plan.id, device.id, due.key)
        return order


def _just_after(due_time: datetime) -> datetime:
    """A second after a fire time (they are whole minutes), counted in UTC: on a local time that comes twice when
    clocks go back, wall-clock arithmetic would step back to its first coming."""
    return due_time.astimezone(UTC) + timedelta(seconds=1)


def _fire_time(trigger: Any, at_or_after: datetime) -> datetime | None:
    """The trigger's first fire time at or after a time, in UTC."""
    fire_time: datetime | None = trigger.get_next_fire_time(None, at_or_after)
    # In UTC: a local time that comes twice compares unequal to any time in another zone (PEP 495).
    return fire_time.astimezone(UTC) if fire_time is not None else None


def _mark_of(occurrence: MaintenanceOccurrence | None) -> int | None:
    """The meter mark an occurrence recorded (its key is `m<k>`), or None."""
    if occurrence is None or not occurrence.due_key.startswith("m"):
        return None
    try:
        return int(occurrence.due_key[1:])
    except ValueError:
        return None


def _ms(at: datetime) -> int:
    return int(at.astimezone(UTC).timestamp() * 1000)


def _number(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"


def _plural(n: int, word: str) -> str:
    return word if n == 1 else f"{word}s"
