"""The API's response shapes. Times are RFC 3339 with the facility's offset."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Generic, TypeVar
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator

from facmon.config.durations import format_duration
from facmon.facility.model import (
    AlarmState,
    Category,
    DeviceType,
    EscalationState,
    NotificationState,
    Priority,
    Severity,
    WorkOrderSource,
    WorkOrderStatus,
)
from facmon.ingest.storage import Aggregate

T = TypeVar("T")
Value = float | int | bool | str | None

# Ids are the state store's INTEGER primary keys, counted from 1: 32-bit in PostgreSQL. A larger one names nothing,
# and the store cannot even compare it (PostgreSQL: integer out of range; SQLite beyond 64 bits: an overflow).
MAX_ID = 2**31 - 1
RowId = Annotated[int, Field(ge=1, le=MAX_ID)]

# The times the API takes and shows: a day inside datetime's range, so that no time zone's offset takes one out.
EARLIEST = datetime.min.replace(tzinfo=UTC) + timedelta(days=1)
LATEST = datetime.max.replace(tzinfo=UTC) - timedelta(days=1)


def later_by(at: datetime, span: timedelta) -> datetime:
    """`at` plus `span`; ValueError, worded for the caller, when that is after the latest time there is."""
    if span > LATEST - at:
        raise ValueError(f"{format_duration(span)} from now is after the year 9999")
    return at + span


def storable_text(value: str) -> str:
    """`value`, or ValueError if it holds the NUL character, which PostgreSQL cannot keep nor compare as text.
    (Lone surrogates, which UTF-8 cannot encode, pydantic refuses in any `str`.)"""
    if "\x00" in value:
        raise ValueError("text cannot contain the NUL character (\\u0000)")
    return value


def _storable(value: object) -> None:
    if isinstance(value, str):
        storable_text(value)
    elif isinstance(value, list | tuple):
        for item in value:
            _storable(item)


class RequestBody(BaseModel):
    """A request's JSON body: the text of each of its fields goes to the state store, so it must be storable."""

    @field_validator("*")
    @classmethod
    def _storable_text(cls, value: object) -> object:
        _storable(value)
        return value


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int = Field(description="How many match the filters, over all pages")


class DeviceStatus(StrEnum):
    ONLINE = "online"
    STALE = "stale"
    OFFLINE = "offline"
    OUT_OF_SERVICE = "out_of_service"


class ServiceRequest(RequestBody):
    """Take a device out of service for maintenance, for a time if known."""

    reason: str = Field(min_length=3, max_length=2000)
    duration: str | None = Field(None, description="Return to service by itself after this long", examples=["4h"])


class Limit(BaseModel):
    """A threshold of a rule on one of the device's fields, as it applies to this device."""

    rule: str
    field: str
    severity: Severity
    kind: str = Field(description="`above` or `below`")
    value: float


class DevicePublic(BaseModel):
    id: str
    type: DeviceType
    site: str
    building: str
    name: str
    location: str | None
    model: str | None
    status: DeviceStatus
    last_seen: datetime | None
    latest_at: datetime | None = Field(description="Time of the newest reading")
    latest: dict[str, Value] = Field(description="Newest value of each field")
    active_alarms: int
    seq_gaps: int = Field(0, description="Readings missing by the device's `seq` numbers since facmon started")
    nominal: dict[str, float] = Field({}, description="Nominal values from the config, e.g. `voltage_v`")
    limits: list[Limit] = Field([], description="Its rules' thresholds, for limit lines; only for one device")


class GatewayPublic(BaseModel):
    id: str
    site: str
    name: str | None
    status: str = Field(description="`online`, `offline` (its own word or its will), `unknown` (not heard from)")
    since: datetime | None = Field(description="When facmon heard the status change")
    registered: bool = Field(description="Whether the config names this gateway")


class TelemetryPoint(BaseModel):
    t: datetime = Field(description="The reading's time; for an aggregate, the start of its window")
    v: Value


class TelemetryHistory(BaseModel):
    device_id: str
    field: str
    start: datetime = Field(description="Readings from this time on, to the millisecond")
    stop: datetime = Field(description="Readings before this time, to the millisecond")
    every: str | None = Field(description="The window each point aggregates, as applied; null for raw readings")
    agg: Aggregate | None = Field(description="The aggregate applied to each window; null for raw readings")
    points: list[TelemetryPoint] = Field(description="Oldest first; windows without readings are left out")
    total: int = Field(description="How many points")


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
    returned_at: datetime | None = Field(description="When its condition last went back to normal")
    latched: bool = Field(description="Stays active after its condition clears, until reset")
    shelved_until: datetime | None
    shelved_by: str | None
    shelve_reason: str | None
    value: Value
    message: str


class AlarmEventPublic(BaseModel):
    id: int
    alarm_id: int
    at: datetime
    kind: str = Field(examples=["raised", "acknowledged", "shelved", "returned", "comment"])
    state: AlarmState
    severity: Severity
    actor: str = Field(description="`system` for the rule engine, else the operator")
    value: Value
    note: str | None


class OperatorNote(RequestBody):
    """Why; who acts is the signed-in user (or token), recorded with the action."""

    note: str | None = Field(None, max_length=2000)


class AcknowledgeMany(OperatorNote):
    ids: list[RowId] = Field(min_length=1, max_length=1000)


class ShelveRequest(RequestBody):
    duration: str = Field(description="How long, at most the configured alarms.max_shelve", examples=["2h"])
    reason: str = Field(min_length=3, max_length=2000)


class CommentRequest(RequestBody):
    text: str = Field(min_length=1, max_length=2000)


class RulePublic(BaseModel):
    id: str
    name: str
    enabled: bool
    devices: int = Field(description="How many devices it applies to")
    levels: list[str] = Field(description="Severity and condition of each level")


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
    source: WorkOrderSource = Field(description="`alarm`, `manual` (created through the API) or `preventive`")
    alarm_id: int | None
    team: str | None
    assignee: str | None
    created_at: datetime
    updated_at: datetime | None
    due_at: datetime | None = Field(description="`created_at` plus the response target of its priority")
    first_response_at: datetime | None = Field(description="When it first moved out of `open` to be worked on")
    resolved_at: datetime | None = Field(description="When it was resolved; `null` again if reopened")
    closed_at: datetime | None
    response_minutes: float | None = Field(description="From `created_at` to `first_response_at`, in minutes")
    resolution_minutes: float | None = Field(description="From `created_at` to `resolved_at`, in minutes")
    allowed: list[WorkOrderStatus] = Field([], description="The statuses it may move to next")


class WorkOrderEventPublic(BaseModel):
    id: int
    at: datetime
    kind: str = Field(examples=["opened", "transition", "alarm_cleared"])
    from_status: WorkOrderStatus | None = Field(description="For a transition, the status it left")
    status: WorkOrderStatus = Field(description="The status after it")
    actor: str = Field(description="`system` for facmon itself, else who made the change")
    assignee: str | None = Field(description="For a transition, the assignee after it")
    note: str | None


class WorkOrderDetail(WorkOrderPublic):
    history: list[WorkOrderEventPublic] = Field(description="Every change, oldest first")
    paging: EscalationPublic | None = Field(None, description="Its paging of the on-call; `null` if it pages nobody")


class WorkOrderCreate(RequestBody):
    """A work order opened by hand. Unknown fields are refused, so that a misspelt one is not silently lost."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "title": "Door of lift B1 scrapes on floor 3",
                    "description": "Reported by the tenant of 3-02.",
                    "priority": "P3",
                    "device_id": "lift-B1",
                    "team": "lift-contractor",
                },
                {
                    "title": "Replace the broken lamp in the B1 corridor",
                    "category": "general",
                    "priority": "P4",
                    "location": "riverside / A / B1 corridor",
                },
            ]
        },
    )

    title: str = Field(min_length=3, max_length=200)
    description: str | None = Field(None, max_length=4000)
    priority: Priority
    category: Category | None = Field(
        None, description="Defaults to the device's (`water` for a pump, …); required without a device"
    )
    device_id: str | None = Field(None, description="A registered device, if the work is on one")
    location: str | None = Field(None, max_length=200, description="Defaults to the device's site, building, place")
    team: str | None = Field(None, max_length=64)


class WorkOrderTransition(RequestBody):
    """Move a work order to another status. Unknown fields are refused."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"to": "assigned", "assignee": "zhang.wei"},
                {"to": "in_progress", "note": "on site"},
                {"to": "resolved", "note": "replaced the pressure switch"},
                {"to": "cancelled", "note": "duplicate of WO-20261122-0001"},
            ]
        },
    )

    to: WorkOrderStatus
    note: str | None = Field(
        None, max_length=2000, description="Required to `resolved` (what was done) and `cancelled` (why)"
    )
    assignee: str | None = Field(
        None, max_length=64, description="Required to `assigned`; may be given to `in_progress`; not otherwise"
    )


class RejectPublic(BaseModel):
    id: int
    topic: str
    reason: str
    received_at: datetime
    payload: str = Field(description="The payload as text, cut at 64 KiB")


class NotificationPublic(BaseModel):
    id: int
    channel: str = Field(description="The configured channel it goes through")
    kind: str = Field(description="What it tells, such as `work_order_opened`")
    ref: str = Field(description="What it is about, such as a work order number")
    language: str
    subject: str
    state: NotificationState = Field(description="`pending` (waiting or between tries), `sent` or `dead`")
    attempts: int = Field(description="Attempts to send it so far")
    created_at: datetime
    next_attempt_at: datetime | None = Field(description="When it is tried next; `null` unless `pending`")
    sent_at: datetime | None
    last_error: str | None = Field(description="Why the last attempt failed, cut at 1000 characters")
    recipient: str | None = Field(None, description="For a page: the person paged (`oncall.people`)")
    address: str | None = Field(None, description="For a page: their address on the channel")


class EscalationPublic(BaseModel):
    """Where the paging of a work order stands."""

    policy: str = Field(description="The escalation policy (`oncall.escalation_policies`)")
    state: EscalationState = Field(description="`active` (paging), `acknowledged`, or `ended`")
    step: int = Field(description="The step paged last, from 1")
    round: int = Field(description="How many times the policy has started over")
    pages: int = Field(description="Pagings done so far (steps and reminders)")
    started_at: datetime
    next_at: datetime | None = Field(description="When the next step or reminder is due; `null` when none is")
    acked_at: datetime | None
    acked_by: str | None
    ended_at: datetime | None
    end_reason: str | None = Field(description="Why paging ended, e.g. `work order in_progress`")


class ShiftPublic(BaseModel):
    schedule: str
    name: str | None = Field(description="The schedule's name")
    person: str | None = Field(description="Who is on call now; `null` when nobody is")
    person_name: str | None
    layer: str | None = Field(description="The layer that puts them on call, or `override`")
    until: datetime | None = Field(description="When the on-call person next changes (looked up to 62 days ahead)")


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
