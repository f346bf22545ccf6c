"""Preventive maintenance plans as the config writes them.

A plan covers devices (by id or type) and is either on a calendar (`every: week`, `day: mon`, `at: "09:00"`, in the
facility's time zone) or on a meter (`trips` of a lift, `run_hours` of a pump, every so many units). It opens a
work order `ahead` of each due date or meter reading, so the round can be planned.
"""

from __future__ import annotations

import re
from datetime import time, timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, Field, model_validator

from facmon.config.types import SECTION, Duration, Identifier, Location, as_list, clock_time
from facmon.facility.model import Device, DeviceType, Priority

_MONTH_DAY = re.compile(r"^(0?[1-9]|1[0-2])-(0?[1-9]|[12]\d|3[01])$")
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

# What a meter counts, and of which device type: a lift's cumulative `trips` as it reports them, a pump's running
# hours as facmon adds them up from `pump_running`.
METERS: dict[str, DeviceType] = {"trips": DeviceType.ELEVATOR, "run_hours": DeviceType.PUMP}


class _Model(BaseModel):
    model_config = SECTION


class Calendar(_Model):
    """Due every day, week (`day` a weekday), month (`day` 1-31, or `last`) or year (`day` MM-DD), `at` a time."""

    every: Literal["day", "week", "month", "year"]
    day: str | int | None = None
    at: Annotated[time, BeforeValidator(clock_time)] = time(9, 0)
    # How long before the due time the work order opens.
    ahead: Duration = timedelta(days=2)

    @model_validator(mode="after")
    def _on_fits_every(self) -> Calendar:
        day = self.day
        if self.every == "day":
            if day is not None:
                raise ValueError("a daily plan takes no `day`")
        elif self.every == "week":
            if not isinstance(day, str) or day.lower()[:3] not in _WEEKDAYS:
                raise ValueError("a weekly plan needs `day` a weekday: mon, tue, … sun")
        elif self.every == "month":
            if not (day == "last" or (isinstance(day, int) and 1 <= day <= 31)):
                raise ValueError("a monthly plan needs `day` of the month (1-31) or last")
        elif not isinstance(day, str) or not _MONTH_DAY.match(day):
            raise ValueError('a yearly plan needs `day` as "MM-DD" in quotes, e.g. "03-15"')
        return self

    def cron(self) -> dict[str, str | int]:
        """The fields of an APScheduler CronTrigger that fires at each due time."""
        fields: dict[str, str | int] = {"hour": self.at.hour, "minute": self.at.minute, "second": 0}
        if self.every == "week":
            fields["day_of_week"] = str(self.day).lower()[:3]
        elif self.every == "month":
            fields["day"] = "last" if self.day == "last" else int(str(self.day))
        elif self.every == "year":
            month, day = str(self.day).split("-")
            fields["month"], fields["day"] = int(month), int(day)
        return fields


class Meter(_Model):
    """Due each time the meter passes a multiple of `every`; the work order opens `ahead` units before."""

    field: Literal["trips", "run_hours"]
    every: float = Field(gt=0)
    ahead: float = Field(0, ge=0)
    # When the work order is due, counted from when it opens.
    due_within: Duration = timedelta(days=7)

    @model_validator(mode="after")
    def _ahead_below_every(self) -> Meter:
        if self.ahead >= self.every:
            raise ValueError("ahead must be less than every")
        return self


class Plan(_Model):
    id: Identifier
    title: str
    devices: Annotated[list[Identifier], BeforeValidator(as_list)] = []
    device_types: Annotated[list[DeviceType], BeforeValidator(as_list)] = []
    calendar: Calendar | None = None
    meter: Meter | None = None
    priority: Priority = Priority.P4
    team: str | None = None
    description: str | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Plan:
        if (self.calendar is None) == (self.meter is None):
            raise ValueError("give exactly one of calendar or meter")
        if not self.devices and not self.device_types:
            raise ValueError("give the devices or device_types the plan covers")
        return self

    def covers(self, device: Device) -> bool:
        return device.id in self.devices or device.type in self.device_types


class MaintenanceConfig(_Model):
    plans: list[Plan] = []
    # How often meters and calendars are looked at.
    check_every: Duration = timedelta(minutes=10)


def check_maintenance(
    maintenance: MaintenanceConfig, devices: list[Device], at: Location = ("maintenance",)
) -> list[tuple[Location, str]]:
    """Plans with unique ids that cover known devices, and meters their devices have."""
    found: list[tuple[Location, str]] = []
    known = {d.id for d in devices}
    seen: set[str] = set()
    for p, plan in enumerate(maintenance.plans):
        here = (*at, "plans", p)
        if plan.id in seen:
            found.append(((*here, "id"), f"plan id {plan.id!r} is used twice"))
        seen.add(plan.id)
        for i, device_id in enumerate(plan.devices):
            if device_id not in known:
                found.append(((*here, "devices", i), f"no device has the id {device_id!r}"))
        covered = [d for d in devices if plan.covers(d)]
        if not covered and not any(d not in known for d in plan.devices):
            found.append((here, "covers no device"))
        if plan.meter is not None:
            wanted = METERS[plan.meter.field]
            other = sorted({d.id for d in covered if d.type is not wanted})
            if other:
                found.append(
                    ((*here, "meter", "field"), f"{plan.meter.field} is a meter of {wanted} devices, not of {other[0]}")
                )
    return found
