"""`GET /api/v1/reports/monthly`: the monthly report, as JSON or as a CSV file for a spreadsheet."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from facmon.alerts.reports import MonthlyReport, month_of, monthly_report
from facmon.api.deps import ServicesDep
from facmon.api.routes.params import invalid
from facmon.facility.model import Severity

router = APIRouter(prefix="/api/v1/reports", tags=["reports"])

CSV = "text/csv"


class ReportFormat(StrEnum):
    JSON = "json"
    CSV = "csv"


class DeviceTypeFaultsPublic(BaseModel):
    device_type: str = Field(description="pump, power, elevator, smoke; `unknown` for a device no longer configured")
    faults: int


class DeviceFaultsPublic(BaseModel):
    device_id: str
    device_type: str
    name: str | None = Field(description="null for a device no longer configured")
    site: str
    building: str | None
    faults: int


class SeverityFaultsPublic(BaseModel):
    severity: Severity
    faults: int = Field(description="By the severity the alarm was raised at")


class MttaPublic(BaseModel):
    acknowledged: int = Field(description="Faults acknowledged (by the time of the report)")
    unacknowledged: int = Field(description="Faults never acknowledged")
    mean_minutes: float | None = Field(
        description="Mean time from raised to first acknowledgement, over the acknowledged; null when none was"
    )


class ResolutionPublic(BaseModel):
    key: str = Field(description="`all`, a category or a priority")
    work_orders: int = Field(description="Work orders opened in the month")
    resolved: int = Field(description="Of those, resolved")
    mean_minutes: float | None = Field(description="Mean time from opening to resolution; null when none resolved")


class MttrPublic(BaseModel):
    overall: ResolutionPublic
    by_category: list[ResolutionPublic]
    by_priority: list[ResolutionPublic]


class SlaPublic(BaseModel):
    key: str = Field(description="`all` or a priority")
    met: int = Field(description="First response by the due time")
    missed: int = Field(description="First response after the due time")
    overdue: int = Field(description="No response yet, and past the due time")
    pending: int = Field(description="No response yet, still within the due time: not judged")
    compliance_pct: float | None = Field(description="met / (met + missed + overdue); null when none is judged")


class SlaReportPublic(BaseModel):
    overall: SlaPublic
    by_priority: list[SlaPublic]


class OffenderPublic(BaseModel):
    key: str = Field(description="Device id or rule id")
    name: str | None = Field(description="The device's name; null for rules and for unconfigured devices")
    faults: int


class MonthlyReportPublic(BaseModel):
    month: str = Field(description="YYYY-MM")
    start: datetime = Field(description="The month's first moment, in the facility's time zone")
    end: datetime = Field(description="The next month's first moment (not included)")
    generated_at: datetime = Field(description="Figures are as known then: open work orders may still change them")
    faults: int = Field(description="Alarms raised in the month, not suppressed")
    by_device_type: list[DeviceTypeFaultsPublic] = Field(description="Most first")
    by_device: list[DeviceFaultsPublic] = Field(description="Devices with faults, most first")
    by_severity: list[SeverityFaultsPublic]
    mtta: MttaPublic
    mttr: MttrPublic = Field(description="Over the work orders opened in the month")
    sla: SlaReportPublic = Field(description="Response targets of the work orders opened in the month")
    top_devices: list[OffenderPublic] = Field(description="The 10 devices with the most faults")
    top_rules: list[OffenderPublic] = Field(description="The 10 rules that raised the most faults")


@router.get(
    "/monthly",
    response_model=MonthlyReportPublic,
    summary="Monthly report: faults per device type and device, MTTA, MTTR, SLA compliance, top offenders",
    description="The month runs in the facility's time zone. Times are in minutes, to one decimal. With "
    "`format=csv`, a `text/csv` attachment with one block per table: a line naming the table, its column "
    "names, its rows, then an empty line.",
    responses={
        200: {"content": {CSV: {"schema": {"type": "string"}}}, "description": "The report, as JSON or CSV"},
        422: {"description": "`month` or `format` not understood"},
    },
)
def monthly(
    services: ServicesDep,
    month: Annotated[
        str | None, Query(description="YYYY-MM, in the facility's time zone; the current month when absent")
    ] = None,
    format: Annotated[ReportFormat, Query(description="json (default) or csv")] = ReportFormat.JSON,
) -> Any:
    tz = services.config.tz
    now = services.clock.now()
    try:
        report = monthly_report(services.state, services.registry, month or month_of(now, tz), tz, now=now)
    except ValueError as exc:
        raise invalid("query", "month", str(exc)) from None
    public = public_report(report)
    if format is ReportFormat.JSON:
        return public
    return Response(
        report_csv(public),
        media_type=CSV,
        headers={"Content-Disposition": f'attachment; filename="facmon-report-{report.month}.csv"'},
    )


def public_report(report: MonthlyReport) -> MonthlyReportPublic:
    return MonthlyReportPublic.model_validate(report, from_attributes=True)


def report_csv(report: MonthlyReportPublic) -> str:
    """One block per table, so each reads as the table it is when the file is opened in a spreadsheet.

    A UTF-8 byte order mark leads, without which Excel takes the file for the local code page and garbles
    names that are not ASCII.
    """
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out, lineterminator="\r\n")

    def block(name: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        writer.writerow([name])
        writer.writerow(columns)
        writer.writerows([["" if v is None else v for v in row] for row in rows])
        writer.writerow([])

    block(
        "summary",
        ["month", "start", "end", "generated_at", "faults", "acknowledged", "unacknowledged", "mtta_minutes"],
        [
            [
                report.month,
                report.start.isoformat(),
                report.end.isoformat(),
                report.generated_at.isoformat(),
                report.faults,
                report.mtta.acknowledged,
                report.mtta.unacknowledged,
                report.mtta.mean_minutes,
            ]
        ],
    )
    block(
        "faults by device type", ["device_type", "faults"], [[t.device_type, t.faults] for t in report.by_device_type]
    )
    block(
        "faults by device",
        ["device_id", "device_type", "name", "site", "building", "faults"],
        [[d.device_id, d.device_type, d.name, d.site, d.building, d.faults] for d in report.by_device],
    )
    block("faults by severity", ["severity", "faults"], [[s.severity.value, s.faults] for s in report.by_severity])
    mttr = [report.mttr.overall, *report.mttr.by_category, *report.mttr.by_priority]
    block(
        "mttr",
        ["key", "work_orders", "resolved", "mttr_minutes"],
        [[r.key, r.work_orders, r.resolved, r.mean_minutes] for r in mttr],
    )
    block(
        "sla",
        ["key", "met", "missed", "overdue", "pending", "compliance_pct"],
        [
            [s.key, s.met, s.missed, s.overdue, s.pending, s.compliance_pct]
            for s in (report.sla.overall, *report.sla.by_priority)
        ],
    )
    block("top devices", ["device_id", "name", "faults"], [[o.key, o.name, o.faults] for o in report.top_devices])
    block("top rules", ["rule", "faults"], [[o.key, o.faults] for o in report.top_rules])
    return out.getvalue()
