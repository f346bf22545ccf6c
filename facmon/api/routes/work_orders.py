from __future__ import annotations

from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query

from facmon.api.deps import ServicesDep
from facmon.api.routes.params import Limit, Offset, enum_list
from facmon.api.schemas import Page, WorkOrderPublic, local_time
from facmon.facility.model import WorkOrder, WorkOrderStatus

router = APIRouter(prefix="/api/v1/work-orders", tags=["work orders"])


@router.get("", response_model=Page[WorkOrderPublic], summary="Work orders, most urgent first")
def list_work_orders(
    services: ServicesDep,
    status: Annotated[list[str] | None, Query(description="One or more statuses, comma-separated")] = None,
    device: str | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Page[WorkOrderPublic]:
    statuses = enum_list(status, WorkOrderStatus, "status") or None
    page = services.state.list_work_orders(statuses=statuses, device_id=device, limit=limit, offset=offset)
    return Page(items=[public_work_order(o, services.config.tz) for o in page.items], total=page.total)


@router.get("/{work_order_id}", response_model=WorkOrderPublic, responses={404: {"description": "No such work order"}})
def get_work_order(services: ServicesDep, work_order_id: int) -> WorkOrderPublic:
    return public_work_order(services.state.get_work_order(work_order_id), services.config.tz)


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
    )
