from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query

from facmon.alerts.errors import AcknowledgeError
from facmon.alerts.work_orders.lifecycle import allowed_transitions, resolution_time, response_time
from facmon.alerts.work_orders.records import announce_work_order, open_work_order, transition_work_order
from facmon.api.auth import Engineer, Operator
from facmon.api.deps import ServicesDep
from facmon.api.routes.params import Id, Limit, Offset, TextFilter, enum_list, invalid
from facmon.api.schemas import (
    EscalationPublic,
    Page,
    WorkOrderCreate,
    WorkOrderDetail,
    WorkOrderEventPublic,
    WorkOrderPublic,
    WorkOrderTransition,
    local_time,
)
from facmon.facility.model import (
    CATEGORY_OF_DEVICE_TYPE,
    Category,
    Escalation,
    Priority,
    WorkOrder,
    WorkOrderEvent,
    WorkOrderSource,
    WorkOrderStatus,
)

router = APIRouter(prefix="/api/v1/work-orders", tags=["work orders"])

_ONE: dict[int | str, dict[str, Any]] = {404: {"description": "No such work order"}}


@router.get("", response_model=Page[WorkOrderPublic], summary="Work orders, most urgent first")
def list_work_orders(
    services: ServicesDep,
    status: Annotated[list[str] | None, Query(description="One or more statuses, comma-separated")] = None,
    priority: Annotated[list[str] | None, Query(description="One or more of P1…P4, comma-separated")] = None,
    category: Annotated[list[str] | None, Query(description="One or more categories, comma-separated")] = None,
    source: Annotated[
        list[str] | None, Query(description="`alarm`, `manual`, `preventive`; several comma-separated")
    ] = None,
    device: TextFilter = None,
    assignee: TextFilter = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Page[WorkOrderPublic]:
    statuses = enum_list(status, WorkOrderStatus, "status") or None
    page = services.state.list_work_orders(
        statuses=statuses,
        priorities=enum_list(priority, Priority, "priority"),
        categories=enum_list(category, Category, "category"),
        sources=enum_list(source, WorkOrderSource, "source"),
        device_id=device,
        assignee=assignee,
        limit=limit,
        offset=offset,
    )
    return Page(items=[public_work_order(o, services.config.tz) for o in page.items], total=page.total)


@router.post(
    "",
    response_model=WorkOrderDetail,
    status_code=201,
    summary="Open a work order by hand",
    description="Numbered from the same daily `WO-YYYYMMDD-NNNN` counter as those opened by alarms, due by the "
    "response target of its priority, and announced on the configured channels.",
    responses={422: {"description": "A field missing or invalid, or no such device"}},
)
def create_work_order(services: ServicesDep, user: Engineer, body: WorkOrderCreate) -> WorkOrderDetail:
    device = None
    if body.device_id is not None:
        device = services.registry.get(body.device_id)
        if device is None:
            raise invalid("body", "device_id", f"no device {body.device_id!r}")
    category = body.category or (CATEGORY_OF_DEVICE_TYPE[device.type] if device else None)
    if category is None:
        raise invalid("body", "category", "a work order without a device needs a category")
    tz = services.config.tz
    with services.state.begin() as tx:
        order = open_work_order(
            tx,
            title=body.title,
            category=category,
            priority=body.priority,
            source=WorkOrderSource.MANUAL,
            at=services.clock.now(),
            tz=tz,
            response_target=services.config.work_orders.targets(category, body.priority).respond,
            device=device,
            description=body.description,
            team=body.team,
            location=body.location,
            actor=user.name,
        )
        announce_work_order(tx, order, services.notifiers, tz, services.escalator)
    return detail(services, order)


@router.get(
    "/{work_order_id}", response_model=WorkOrderDetail, summary="One work order with its history", responses=_ONE
)
def get_work_order(services: ServicesDep, work_order_id: Id) -> WorkOrderDetail:
    return detail(services, services.state.get_work_order(work_order_id))


@router.post(
    "/{work_order_id}/ack",
    response_model=WorkOrderDetail,
    summary="Acknowledge the paging of a work order",
    description="Someone is on it: paging stops (escalation steps and, unless resolved in time, the reminders "
    "for urgent work orders go on). Acknowledging again changes nothing. The page's one-click link does the same.",
    responses={
        **_ONE,
        409: {"description": "The work order pages nobody, or its paging is over"},
    },
)
def acknowledge(services: ServicesDep, user: Operator, work_order_id: Id) -> WorkOrderDetail:
    order = services.state.get_work_order(work_order_id)
    if services.escalator is None:
        raise AcknowledgeError(f"work order {order.number} pages nobody: nothing to acknowledge")
    services.escalator.acknowledge(order.id, by=user.name, at=services.clock.now(), via="api")
    return detail(services, order)


@router.post(
    "/{work_order_id}/transition",
    response_model=WorkOrderDetail,
    summary="Move a work order to another status",
    description="open → assigned, in_progress, cancelled; assigned → in_progress, on_hold, open (unassign), "
    "cancelled; in_progress → on_hold, resolved, cancelled; on_hold → in_progress, cancelled; resolved → closed, "
    "in_progress (reopen); closed and cancelled are final. `assigned` needs an `assignee`, `resolved` and "
    "`cancelled` a `note`. Each move is recorded in the history with who made it and the note.",
    responses={
        **_ONE,
        409: {"description": "Not allowed from its status; `current_status` and `allowed` say where it can go"},
        422: {"description": "A field missing or invalid, such as no assignee for `assigned`"},
    },
)
def transition(services: ServicesDep, user: Engineer, work_order_id: Id, body: WorkOrderTransition) -> WorkOrderDetail:
    order = transition_work_order(
        services.state,
        work_order_id,
        body.to,
        by=user.name,
        at=services.clock.now(),
        note=body.note,
        assignee=body.assignee,
    )
    return detail(services, order)


def detail(services: ServicesDep, order: WorkOrder) -> WorkOrderDetail:
    tz = services.config.tz
    history = [public_event(e, tz) for e in services.state.work_order_events(order.id)]
    escalation = services.state.escalation_of(order.id)
    paging = public_escalation(escalation, tz) if escalation is not None else None
    return WorkOrderDetail(**public_work_order(order, tz).model_dump(), history=history, paging=paging)


def public_escalation(escalation: Escalation, tz: ZoneInfo) -> EscalationPublic:
    return EscalationPublic(
        policy=escalation.policy,
        state=escalation.state,
        step=escalation.step + 1,
        round=escalation.round,
        pages=escalation.pages,
        started_at=escalation.started_at.astimezone(tz),
        next_at=local_time(escalation.next_at, tz),
        acked_at=local_time(escalation.acked_at, tz),
        acked_by=escalation.acked_by,
        ended_at=local_time(escalation.ended_at, tz),
        end_reason=escalation.end_reason,
    )


def public_work_order(order: WorkOrder, tz: ZoneInfo) -> WorkOrderPublic:
    return WorkOrderPublic(
        id=order.id,
        number=order.number,
        title=order.title,
        description=order.description,
        device_id=order.device_id,
        site=order.site,
        location=order.location,
        category=order.category,
        priority=order.priority,
        status=order.status,
        source=order.source,
        alarm_id=order.alarm_id,
        team=order.team,
        assignee=order.assignee,
        created_at=order.created_at.astimezone(tz),
        updated_at=local_time(order.updated_at, tz),
        due_at=local_time(order.due_at, tz),
        first_response_at=local_time(order.first_response_at, tz),
        resolved_at=local_time(order.resolved_at, tz),
        closed_at=local_time(order.closed_at, tz),
        response_minutes=_minutes(response_time(order)),
        resolution_minutes=_minutes(resolution_time(order)),
        allowed=list(allowed_transitions(order.status)),
    )


def public_event(event: WorkOrderEvent, tz: ZoneInfo) -> WorkOrderEventPublic:
    return WorkOrderEventPublic(
        id=event.id or 0,
        at=event.at.astimezone(tz),
        kind=event.kind,
        from_status=event.from_status,
        status=event.status,
        actor=event.actor,
        assignee=event.assignee,
        note=event.note,
    )


def _minutes(span: timedelta | None) -> float | None:
    return round(span.total_seconds() / 60, 1) if span is not None else None
