from __future__ import annotations

from enum import StrEnum
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query

from facmon.api.deps import ServicesDep
from facmon.api.routes.params import Limit, Offset, enum_list
from facmon.api.schemas import AlarmPublic, Page, local_time
from facmon.facility.model import Alarm, AlarmState, Severity
from facmon.facility.state import ACTIVE_STATES

router = APIRouter(prefix="/api/v1/alarms", tags=["alarms"])


class AlarmFilter(StrEnum):
    ACTIVE = "active"
    UNACKED = "unacked"
    SHELVED = "shelved"
    ALL = "all"


@router.get("", response_model=Page[AlarmPublic], summary="Alarms, most severe then newest first")
def list_alarms(
    services: ServicesDep,
    state: Annotated[
        AlarmFilter,
        Query(
            description="active: not yet cleared and not shelved; unacked: waiting for an operator; "
            "shelved; all: including cleared"
        ),
    ] = AlarmFilter.ACTIVE,
    severity: Annotated[list[str] | None, Query(description="One or more, comma-separated")] = None,
    site: str | None = None,
    device: str | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Page[AlarmPublic]:
    severities = enum_list(severity, Severity, "severity")
    states, shelved = {
        AlarmFilter.ACTIVE: (ACTIVE_STATES, False),
        AlarmFilter.UNACKED: ((AlarmState.ACTIVE_UNACKED, AlarmState.RETURNED_UNACKED), False),
        AlarmFilter.SHELVED: (None, True),
        AlarmFilter.ALL: (None, None),
    }[state]
    page = services.state.list_alarms(
        states=states, shelved=shelved, severities=severities, site=site, device_id=device, limit=limit, offset=offset
    )
    return Page(items=[public_alarm(a, services.config.tz) for a in page.items], total=page.total)


def public_alarm(alarm: Alarm, tz: ZoneInfo) -> AlarmPublic:
    return AlarmPublic(
        id=alarm.id,
        device_id=alarm.device_id,
        site=alarm.site,
        rule=alarm.rule,
        severity=alarm.severity,
        state=alarm.state,
        shelved=alarm.shelved,
        suppressed=alarm.suppressed,
        raised_at=alarm.raised_at.astimezone(tz),
        acked_at=local_time(alarm.acked_at, tz),
        acked_by=alarm.acked_by,
        cleared_at=local_time(alarm.cleared_at, tz),
        value=alarm.value,
        message=alarm.message,
    )
