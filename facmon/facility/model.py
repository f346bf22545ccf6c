"""Domain types shared by ingest, rules, alerts and the API."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

Scalar = float | int | bool | str | None


class DeviceType(StrEnum):
    PUMP = "pump"
    POWER = "power"
    ELEVATOR = "elevator"
    SMOKE = "smoke"


class Severity(StrEnum):
    CRITICAL = "critical"
    MAJOR = "major"
    MINOR = "minor"
    WARNING = "warning"

    @property
    def rank(self) -> int:
        """Higher is worse: critical 4 … warning 1."""
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {
    Severity.CRITICAL: 4,
    Severity.MAJOR: 3,
    Severity.MINOR: 2,
    Severity.WARNING: 1,
}


class AlarmState(StrEnum):
    """ISA-18.2 alarm states (shelving and suppression are flags beside the state)."""

    ACTIVE_UNACKED = "active_unacked"
    ACTIVE_ACKED = "active_acked"
    RETURNED_UNACKED = "returned_unacked"
    CLEARED = "cleared"


class Priority(StrEnum):
    P1 = "P1"
    P2 = "P2"
    P3 = "P3"
    P4 = "P4"


class WorkOrderStatus(StrEnum):
    OPEN = "open"
    ASSIGNED = "assigned"
    IN_PROGRESS = "in_progress"
    ON_HOLD = "on_hold"
    RESOLVED = "resolved"
    CLOSED = "closed"
    CANCELLED = "cancelled"


class WorkOrderSource(StrEnum):
    """Who opened a work order: an alarm, a person, or a maintenance plan."""

    ALARM = "alarm"
    MANUAL = "manual"
    PREVENTIVE = "preventive"


class Category(StrEnum):
    WATER = "water"
    POWER = "power"
    ELEVATOR = "elevator"
    FIRE = "fire"
    GENERAL = "general"


CATEGORY_OF_DEVICE_TYPE = {
    DeviceType.PUMP: Category.WATER,
    DeviceType.POWER: Category.POWER,
    DeviceType.ELEVATOR: Category.ELEVATOR,
    DeviceType.SMOKE: Category.FIRE,
}


@dataclass(frozen=True, slots=True)
class Device:
    """A registered device, placed in its site and building."""

    id: str
    type: DeviceType
    site: str
    building: str
    name: str
    location: str | None = None
    model: str | None = None
    nominal: dict[str, float] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Reading:
    """One accepted telemetry sample of one device."""

    device_id: str
    ts_ms: int
    fields: dict[str, Scalar]
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class Reject:
    """A message, or one element of an array payload, that ingest refused."""

    topic: str
    reason: str
    received_at: datetime
    payload: str


@dataclass(frozen=True, slots=True)
class Alarm:
    id: int
    rule: str
    device_id: str
    site: str
    severity: Severity
    state: AlarmState
    raised_at: datetime
    value: Scalar
    message: str
    shelved: bool = False
    suppressed: bool = False
    acked_at: datetime | None = None
    acked_by: str | None = None
    returned_at: datetime | None = None
    cleared_at: datetime | None = None
    updated_at: datetime | None = None
    # Stays active after its condition clears, until an operator resets it.
    latched: bool = False
    shelved_until: datetime | None = None
    shelved_by: str | None = None
    shelve_reason: str | None = None


@dataclass(frozen=True, slots=True)
class AlarmEvent:
    """One line of an alarm's audit trail: what changed, when, by whom and why."""

    alarm_id: int
    at: datetime
    kind: str
    state: AlarmState
    severity: Severity
    actor: str = "system"
    value: Scalar = None
    note: str | None = None
    id: int | None = None


@dataclass(frozen=True, slots=True)
class WorkOrder:
    id: int
    number: str
    title: str
    device_id: str | None
    site: str | None
    category: Category
    priority: Priority
    status: WorkOrderStatus
    source: WorkOrderSource
    created_at: datetime
    due_at: datetime | None
    alarm_id: int | None = None
    description: str | None = None
    location: str | None = None
    team: str | None = None
    assignee: str | None = None
    updated_at: datetime | None = None
    # When someone first took it up (assigned or started), when it was last resolved, when it was closed.
    first_response_at: datetime | None = None
    resolved_at: datetime | None = None
    closed_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class WorkOrderEvent:
    """One line of a work order's history: what happened, when, by whom; for a transition, from which status."""

    work_order_id: int
    at: datetime
    kind: str
    status: WorkOrderStatus
    actor: str = "system"
    note: str | None = None
    id: int | None = None
    from_status: WorkOrderStatus | None = None
    assignee: str | None = None


class NotificationState(StrEnum):
    """Where a queued notification stands: waiting (or between tries), delivered, or given up on."""

    PENDING = "pending"
    SENT = "sent"
    DEAD = "dead"


@dataclass(frozen=True, slots=True)
class QueuedNotification:
    """A row of the notification outbox: one message for one channel, rendered in the channel's language."""

    id: int
    channel: str
    kind: str
    ref: str
    language: str
    subject: str
    body: str
    state: NotificationState
    attempts: int
    next_attempt_at: datetime
    created_at: datetime
    sent_at: datetime | None = None
    last_error: str | None = None
    # For a page: the person (oncall.people) and their address on the channel.
    recipient: str | None = None
    address: str | None = None


class EscalationState(StrEnum):
    """Where the paging for a work order stands: still escalating, acknowledged by someone, or over."""

    ACTIVE = "active"
    ACKNOWLEDGED = "acknowledged"
    ENDED = "ended"


@dataclass(frozen=True, slots=True)
class Escalation:
    """The paging of one work order along an escalation policy.

    `pages` counts the pagings done (a step's notifications, a reminder): it names each paging's notifications, so
    a paging is queued once whatever happens around it. `step` is the step paged last and `round` how many times
    the policy has started over; `next_at` is when the next paging is due (None once nothing more is).
    """

    id: int
    work_order_id: int
    policy: str
    state: EscalationState
    step: int
    round: int
    pages: int
    started_at: datetime
    next_at: datetime | None
    acked_at: datetime | None = None
    acked_by: str | None = None
    ended_at: datetime | None = None
    end_reason: str | None = None


@dataclass(frozen=True, slots=True)
class MaintenanceOccurrence:
    """One due date (or meter mark) of a maintenance plan for a device, and the work order it opened, if any."""

    plan: str
    device_id: str
    due_key: str
    created_at: datetime
    due_at: datetime | None = None
    meter_value: float | None = None
    work_order_id: int | None = None


class Role(StrEnum):
    """What someone may do, each role all that the ones before it may: viewer < operator < engineer < admin.

    viewer reads; operator also acknowledges, shelves and comments alarms and acknowledges pages; engineer also
    opens and moves work orders and takes devices out of service; admin also reloads rules and manages users and
    tokens.
    """

    VIEWER = "viewer"
    OPERATOR = "operator"
    ENGINEER = "engineer"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return list(Role).index(self)

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank


@dataclass(frozen=True, slots=True)
class User:
    id: int
    username: str
    name: str
    role: Role
    password_hash: str
    created_at: datetime
    disabled: bool = False
    # Sign-in attempts from all addresses since the last success (each counted before its password is checked),
    # and until when sign-in is refused everywhere after too many.
    failed_logins: int = 0
    locked_until: datetime | None = None


class TokenKind(StrEnum):
    SESSION = "session"  # given at sign-in, ends at sign-out or expiry
    MACHINE = "machine"  # made by an admin for a program (Grafana, a script), until revoked or expired


@dataclass(frozen=True, slots=True)
class ApiToken:
    """A bearer token as stored: only its SHA-256, never the token itself."""

    id: int
    token_hash: str
    kind: TokenKind
    name: str
    role: Role
    created_at: datetime
    user_id: int | None = None
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None


# The states of an alarm that is not cleared: its condition is active, or its return is not acknowledged yet.
ACTIVE_STATES = (AlarmState.ACTIVE_UNACKED, AlarmState.ACTIVE_ACKED, AlarmState.RETURNED_UNACKED)


@dataclass(frozen=True, slots=True)
class ServiceRecord:
    """A device taken out of service: by whom, why, since when and, if known, until when."""

    device_id: str
    since: datetime
    by: str
    reason: str
    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class AlarmTransition:
    """An alarm event with the site, rule and device of its alarm: the raw material of the alarm KPIs."""

    id: int
    alarm_id: int
    site: str
    rule: str
    device_id: str
    kind: str
    severity: Severity
    at: datetime


@dataclass(frozen=True, slots=True)
class AlarmFlood:
    """A period of more alarms than operators can handle on one site; open while `ended_at` is None."""

    id: int
    site: str
    started_at: datetime
    ended_at: datetime | None
    peak: int


@dataclass(frozen=True, slots=True)
class Lease:
    """A partition's or the leader's lease: who holds it, since which claim (`epoch`), and until when."""

    name: str
    owner: str | None
    epoch: int
    acquired_at: datetime | None = None
    renewed_at: datetime | None = None
    expires_at: datetime | None = None

    def held_by(self, worker: str, now: datetime) -> bool:
        return self.owner == worker and self.expires_at is not None and self.expires_at > now


@dataclass(frozen=True, slots=True)
class ClusterWorker:
    """A worker of a cluster: since when it runs and when it was last heard of."""

    name: str
    started_at: datetime
    seen_at: datetime
