from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query

from facmon.api.auth import Operator
from facmon.api.deps import ServicesDep
from facmon.api.routes.params import Id, Limit, Offset, TextFilter, enum_list, invalid
from facmon.api.schemas import (
    AcknowledgeMany,
    AlarmEventPublic,
    AlarmPublic,
    CommentRequest,
    OperatorNote,
    Page,
    ShelveRequest,
    local_time,
)
from facmon.config.durations import format_duration, parse_duration
from facmon.facility.model import ACTIVE_STATES, Alarm, AlarmState, Severity

router = APIRouter(prefix="/api/v1/alarms", tags=["alarms"])


class AlarmFilter(StrEnum):
    ACTIVE = "active"
    UNACKED = "unacked"
    SHELVED = "shelved"
    SUPPRESSED = "suppressed"
    ALL = "all"


@router.get("", response_model=Page[AlarmPublic], summary="Alarms, most severe then newest first")
def list_alarms(
    services: ServicesDep,
    state: Annotated[
        AlarmFilter,
        Query(
            description="active: not yet cleared, neither shelved nor suppressed; unacked: of those, waiting for an "
            "operator; shelved; suppressed: active but not annunciated (by design or out of service); all: everything"
        ),
    ] = AlarmFilter.ACTIVE,
    severity: Annotated[list[str] | None, Query(description="One or more, comma-separated")] = None,
    site: TextFilter = None,
    device: TextFilter = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Page[AlarmPublic]:
    severities = enum_list(severity, Severity, "severity")
    # What the operator must see is neither shelved nor suppressed (by design, or its device in maintenance).
    states, shelved, suppressed = {
        AlarmFilter.ACTIVE: (ACTIVE_STATES, False, False),
        AlarmFilter.UNACKED: ((AlarmState.ACTIVE_UNACKED, AlarmState.RETURNED_UNACKED), False, False),
        AlarmFilter.SHELVED: (None, True, None),
        AlarmFilter.SUPPRESSED: (ACTIVE_STATES, None, True),
        AlarmFilter.ALL: (None, None, None),
    }[state]
    page = services.state.list_alarms(
        states=states,
        shelved=shelved,
        suppressed=suppressed,
        severities=severities,
        site=site,
        device_id=device,
        limit=limit,
        offset=offset,
    )
    return Page(items=[public_alarm(a, services.config.tz) for a in page.items], total=page.total)


@router.post(
    "/ack",
    response_model=list[AlarmPublic],
    summary="Acknowledge several alarms at once, all or none",
    responses={404: {"description": "No such alarm"}, 409: {"description": "One cannot be acknowledged"}},
)
def acknowledge_many(services: ServicesDep, user: Operator, body: AcknowledgeMany) -> list[AlarmPublic]:
    alarms = services.alarms.acknowledge(body.ids, user.name, services.clock.now(), body.note)
    return [public_alarm(a, services.config.tz) for a in alarms]


@router.get("/{alarm_id}", response_model=AlarmPublic, responses={404: {"description": "No such alarm"}})
def get_alarm(services: ServicesDep, alarm_id: Id) -> AlarmPublic:
    return public_alarm(services.state.get_alarm(alarm_id), services.config.tz)


@router.get(
    "/{alarm_id}/events",
    response_model=Page[AlarmEventPublic],
    summary="The alarm's audit trail",
    responses={404: {"description": "No such alarm"}},
)
def alarm_events(services: ServicesDep, alarm_id: Id) -> Page[AlarmEventPublic]:
    tz = services.config.tz
    events = services.state.alarm_events(alarm_id)
    items = [
        AlarmEventPublic(
            id=e.id or 0,
            alarm_id=e.alarm_id,
            at=e.at.astimezone(tz),
            kind=e.kind,
            state=e.state,
            severity=e.severity,
            actor=e.actor,
            value=e.value,
            note=e.note,
        )
        for e in events
    ]
    return Page(items=items, total=len(items))


_ACTION: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such alarm"},
    409: {"description": "Not allowed in the alarm's state"},
}


@router.post("/{alarm_id}/ack", response_model=AlarmPublic, summary="Acknowledge", responses=_ACTION)
def acknowledge_one(services: ServicesDep, user: Operator, alarm_id: Id, body: OperatorNote) -> AlarmPublic:
    [alarm] = services.alarms.acknowledge([alarm_id], user.name, services.clock.now(), body.note)
    return public_alarm(alarm, services.config.tz)


@router.post(
    "/{alarm_id}/shelve",
    response_model=AlarmPublic,
    summary="Shelve for a time, with a reason",
    responses={**_ACTION, 422: {"description": "Duration missing, malformed or over the maximum"}},
)
def shelve_alarm(services: ServicesDep, user: Operator, alarm_id: Id, body: ShelveRequest) -> AlarmPublic:
    limit = services.config.alarms.max_shelve
    try:
        duration = parse_duration(body.duration)
    except ValueError as exc:
        raise invalid("body", "duration", str(exc)) from None
    if not timedelta(0) < duration <= limit:
        raise invalid("body", "duration", f"shelve for more than 0 and at most {format_duration(limit)}")
    now = services.clock.now()
    alarm = services.alarms.shelve(alarm_id, user.name, now, now + duration, body.reason)
    return public_alarm(alarm, services.config.tz)


@router.post("/{alarm_id}/unshelve", response_model=AlarmPublic, summary="Unshelve", responses=_ACTION)
def unshelve_alarm(services: ServicesDep, user: Operator, alarm_id: Id, body: OperatorNote) -> AlarmPublic:
    alarm = services.alarms.unshelve(alarm_id, user.name, services.clock.now(), body.note)
    return public_alarm(alarm, services.config.tz)


@router.post("/{alarm_id}/reset", response_model=AlarmPublic, summary="Reset a latched alarm", responses=_ACTION)
def reset_alarm(services: ServicesDep, user: Operator, alarm_id: Id, body: OperatorNote) -> AlarmPublic:
    alarm = services.alarms.reset(alarm_id, user.name, services.clock.now(), body.note)
    return public_alarm(alarm, services.config.tz)


@router.post(
    "/{alarm_id}/comment",
    response_model=AlarmPublic,
    summary="Add a note to the audit trail",
    responses={404: {"description": "No such alarm"}},
)
def comment_alarm(services: ServicesDep, user: Operator, alarm_id: Id, body: CommentRequest) -> AlarmPublic:
    alarm = services.alarms.comment(alarm_id, user.name, services.clock.now(), body.text)
    return public_alarm(alarm, services.config.tz)


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
        returned_at=local_time(alarm.returned_at, tz),
        latched=alarm.latched,
        shelved_until=local_time(alarm.shelved_until, tz),
        shelved_by=alarm.shelved_by,
        shelve_reason=alarm.shelve_reason,
        value=alarm.value,
        message=alarm.message,
    )
