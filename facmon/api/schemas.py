"""The API's response shapes. Times are RFC 3339 with the facility's offset."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Generic, TypeVar
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field

from facmon.facility.model import (
    AlarmState,
    Category,
    DeviceType,
    Priority,
    Severity,
    WorkOrderStatus,
)
from facmon.ingest.presence import Presence

T = TypeVar("T")
Value = float | int | bool | str | None


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int = Field(description="How many match the filters, over all pages")


class DevicePublic(BaseModel):
    id: str
    type: DeviceType
    site: str
    building: str
    name: str
    location: str | None
    model: str | None
    status: Presence
    last_seen: datetime | None
    latest_at: datetime | None = Field(description="Time of the newest reading")
    latest: dict[str, Value] = Field(description="Newest value of each field")
    active_alarms: int


class AlarmPublic(BaseModel):
    id: int
    device_id: str
    site: str
    rule: str = Field(description="Id of the rule that raised it")
    severity: Severity
    state: AlarmState
    shelved: bool
    suppressed: bool
    raised_at: datetime
    acked_at: datetime | None
    acked_by: str | None
    cleared_at: datetime | None
    value: Value
    message: str


class WorkOrderPublic(BaseModel):
    id: int
    number: str = Field(examples=["WO-20261122-0001"])
    title: str
    description: str | None
    device_id: str | None
    site: str | None
    location: str | None
    category: Category
    priority: Priority
    status: WorkOrderStatus
    source: str
    alarm_id: int | None
    team: str | None
    assignee: str | None
    created_at: datetime
    updated_at: datetime | None
    due_at: datetime | None


class RejectPublic(BaseModel):
    id: int
    topic: str
    reason: str
    received_at: datetime
    payload: str = Field(description="The payload as text, cut at 64 KiB")


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    checks: dict[str, str]


def local_time(value: datetime | None, tz: ZoneInfo) -> datetime | None:
    """In the facility's timezone, so the offset shown is the one its people live by."""
    return value.astimezone(tz) if value is not None else None


def from_epoch_ms(ms: int, tz: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC).astimezone(tz)
