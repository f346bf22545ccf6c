"""The monthly report: faults per device type and device, MTTA, MTTR, SLA compliance and top offenders.

A month is a calendar month in the facility's time zone. Faults are the alarms raised in it that were not
suppressed; MTTA is over those that were acknowledged, from raised to first acknowledgement. The work-order
figures are over the work orders opened in the month: MTTR over those resolved, from opening to resolution;
SLA over those with a response target, met when the first response came by `due_at`. Figures are as known at
`now`, so a report of the running month, or of a month whose work orders are still open, can still change.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from facmon.alerts.work_orders.lifecycle import resolution_time
from facmon.config.registry import DeviceRegistry
from facmon.facility.model import Category, Priority, Severity, WorkOrder, WorkOrderStatus
from facmon.facility.state import StateStore

TOP_COUNT = 10
UNKNOWN_TYPE = "unknown"

_MONTH = re.compile(r"(\d{4})-(0[1-9]|1[0-2])")


@dataclass(frozen=True, slots=True)
class Month:
    """A calendar month in a time zone: from `start` up to (not including) `end`."""

    name: str
    start: datetime
    end: datetime


def parse_month(value: str, tz: ZoneInfo) -> Month:
    """`YYYY-MM` as the month in `tz`; ValueError for anything else."""
    match = _MONTH.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"{value!r} is not a month such as 2026-11 (YYYY-MM)")
    year, month = int(match[1]), int(match[2])
    if year < 1970:
        raise ValueError(f"{value!r} is before 1970")
    start = datetime(year, month, 1, tzinfo=tz)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=tz)
    return Month(f"{year:04d}-{month:02d}", start, end)


def month_of(at: datetime, tz: ZoneInfo) -> str:
    """The `YYYY-MM` of the month `at` falls in, in `tz`."""
    return at.astimezone(tz).strftime("%Y-%m")


@dataclass(frozen=True, slots=True)
class DeviceTypeFaults:
    device_type: str
    faults: int


@dataclass(frozen=True, slots=True)
class DeviceFaults:
    device_id: str
    device_type: str
    name: str | None
    site: str
    building: str | None
    faults: int


@dataclass(frozen=True, slots=True)
class SeverityFaults:
    severity: Severity
    faults: int


@dataclass(frozen=True, slots=True)
class Acknowledgement:
    """MTTA: `mean_minutes` over the `acknowledged` alarms; None when none was."""

    acknowledged: int
    unacknowledged: int
    mean_minutes: float | None


@dataclass(frozen=True, slots=True)
class Resolution:
    """MTTR of a group of work orders: `key` is `all`, a category or a priority."""

    key: str
    work_orders: int
    resolved: int
    mean_minutes: float | None


@dataclass(frozen=True, slots=True)
class SlaCompliance:
    """Work orders with a response target: `met` and `missed` were responded to, `overdue` were not and are late,
    `pending` were not and still have time. `compliance_pct` is met of met + missed + overdue."""

    key: str
    met: int
    missed: int
    overdue: int
    pending: int
    compliance_pct: float | None


@dataclass(frozen=True, slots=True)
class Resolutions:
    overall: Resolution
    by_category: tuple[Resolution, ...]
    by_priority: tuple[Resolution, ...]


@dataclass(frozen=True, slots=True)
class SlaReport:
    overall: SlaCompliance
    by_priority: tuple[SlaCompliance, ...]


@dataclass(frozen=True, slots=True)
class Offender:
    """A device or a rule (`key`) and how many faults it had."""

    key: str
    faults: int
    name: str | None = None


@dataclass(frozen=True, slots=True)
class MonthlyReport:
    month: str
    start: datetime
    end: datetime
    generated_at: datetime
    faults: int
    by_device_type: tuple[DeviceTypeFaults, ...]
    by_device: tuple[DeviceFaults, ...]
    by_severity: tuple[SeverityFaults, ...]
    mtta: Acknowledgement
    mttr: Resolutions
    sla: SlaReport
    top_devices: tuple[Offender, ...]
    top_rules: tuple[Offender, ...]


def monthly_report(
    store: StateStore, registry: DeviceRegistry, month: str, tz: ZoneInfo, *, now: datetime
) -> MonthlyReport:
    """The report of `month` (`YYYY-MM`, in `tz`) as the state store knows it at `now`.

    Raises ValueError when `month` is not a month.
    """
    span = parse_month(month, tz)
    counts = store.alarm_counts(span.start, span.end)

    per_device: Counter[str] = Counter()
    per_site: dict[str, str] = {}
    per_rule: Counter[str] = Counter()
    per_severity: Counter[Severity] = Counter()
    for c in counts:
        per_device[c.device_id] += c.count
        per_site.setdefault(c.device_id, c.site)
        per_rule[c.rule] += c.count
        per_severity[c.severity] += c.count

    devices = []
    per_type: Counter[str] = Counter()
    for device_id, faults in _most_first(per_device):
        device = registry.get(device_id)
        device_type = device.type.value if device else UNKNOWN_TYPE
        per_type[device_type] += faults
        devices.append(
            DeviceFaults(
                device_id=device_id,
                device_type=device_type,
                name=device.name if device else None,
                site=device.site if device else per_site[device_id],
                building=device.building if device else None,
                faults=faults,
            )
        )
    names = {d.device_id: d.name for d in devices}
    orders = store.work_orders_created(span.start, span.end)

    return MonthlyReport(
        month=span.name,
        start=span.start,
        end=span.end,
        generated_at=now.astimezone(tz),
        faults=sum(per_device.values()),
        by_device_type=tuple(DeviceTypeFaults(t, n) for t, n in _most_first(per_type)),
        by_device=tuple(devices),
        by_severity=tuple(SeverityFaults(s, per_severity[s]) for s in Severity),
        mtta=_acknowledgement(store.first_acknowledgements(span.start, span.end)),
        mttr=_resolutions(orders),
        sla=_sla(orders, now),
        top_devices=tuple(Offender(d, n, names[d]) for d, n in _most_first(per_device)[:TOP_COUNT]),
        top_rules=tuple(Offender(r, n) for r, n in _most_first(per_rule)[:TOP_COUNT]),
    )


def _most_first(counter: Counter[str]) -> list[tuple[str, int]]:
    """Most first; ties in the order of their keys, so the report is the same each time it is asked for."""
    return sorted(counter.items(), key=lambda item: (-item[1], item[0]))


def _mean_minutes(spans: Sequence[timedelta]) -> float | None:
    if not spans:
        return None
    return round(sum(spans, timedelta()) / len(spans) / timedelta(minutes=1), 1)


def _acknowledgement(rows: Iterable[tuple[datetime, datetime | None]]) -> Acknowledgement:
    spans = []
    unacknowledged = 0
    for raised_at, acked_at in rows:
        if acked_at is None:
            unacknowledged += 1
        else:
            spans.append(acked_at - raised_at)
    return Acknowledgement(len(spans), unacknowledged, _mean_minutes(spans))


def _resolution(key: str, orders: Sequence[WorkOrder]) -> Resolution:
    spans = [span for o in orders if (span := resolution_time(o)) is not None]
    return Resolution(key, len(orders), len(spans), _mean_minutes(spans))


def _resolutions(orders: Sequence[WorkOrder]) -> Resolutions:
    """Overall, per category and per priority: every category and priority, with work orders or without."""
    return Resolutions(
        overall=_resolution("all", orders),
        by_category=tuple(_resolution(c, [o for o in orders if o.category is c]) for c in Category),
        by_priority=tuple(_resolution(p, [o for o in orders if o.priority is p]) for p in Priority),
    )


def _sla_of(key: str, orders: Iterable[WorkOrder], now: datetime) -> SlaCompliance:
    met = missed = overdue = pending = 0
    for order in orders:
        if order.due_at is None:
            continue  # no response target
        if order.first_response_at is not None:
            if order.first_response_at <= order.due_at:
                met += 1
            else:
                missed += 1
        elif order.status is WorkOrderStatus.CANCELLED:
            continue  # called off before anyone took it up: nobody owed it a response
        elif order.due_at < now.astimezone(UTC):
            overdue += 1
        else:
            pending += 1
    judged = met + missed + overdue
    pct = round(100 * met / judged, 1) if judged else None
    return SlaCompliance(key, met, missed, overdue, pending, pct)


def _sla(orders: Sequence[WorkOrder], now: datetime) -> SlaReport:
    return SlaReport(
        overall=_sla_of("all", orders, now),
        by_priority=tuple(_sla_of(p, [o for o in orders if o.priority is p], now) for p in Priority),
    )
