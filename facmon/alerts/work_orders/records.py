"""Work orders in the state store: numbered WO-YYYYMMDD-NNNN and opened, moved through the lifecycle, announced."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from facmon.alerts.messages import work_order_opened
from facmon.alerts.notifications.notifier import Notifier
from facmon.alerts.paging.escalation import Escalator
from facmon.alerts.work_orders.lifecycle import transition
from facmon.facility.model import (
    Category,
    Device,
    Priority,
    WorkOrder,
    WorkOrderEvent,
    WorkOrderSource,
    WorkOrderStatus,
)
from facmon.facility.state import StateStore, StateTransaction

log = logging.getLogger(__name__)


def open_work_order(
    tx: StateTransaction,
    *,
    title: str,
    category: Category,
    priority: Priority,
    source: WorkOrderSource,
    at: datetime,
    tz: ZoneInfo,
    response_target: timedelta | None,
    device: Device | None = None,
    alarm_id: int | None = None,
    description: str | None = None,
    team: str | None = None,
    location: str | None = None,
    actor: str = "system",
    due_at: datetime | None = None,
) -> WorkOrder:
    """Number and insert a work order, with the first line of its history; its location defaults to the device's.

    It is due `response_target` after `at`, unless `due_at` says when (a maintenance round due on its date).
    """
    if due_at is None and response_target is not None:
        due_at = at + response_target
    number = tx.next_work_order_number(at.astimezone(tz).strftime("%Y%m%d"))
    order = tx.insert_work_order(
        WorkOrder(
            id=0,
            number=number,
            title=title,
            description=description,
            device_id=device.id if device else None,
            site=device.site if device else None,
            location=location or (_location(device) if device else None),
            category=category,
            priority=priority,
            status=WorkOrderStatus.OPEN,
            source=source,
            alarm_id=alarm_id,
            team=team,
            created_at=at,
            updated_at=at,
            due_at=due_at,
        )
    )
    tx.add_work_order_event(WorkOrderEvent(order.id, at, "opened", order.status, actor, description))
    return order


def transition_work_order(
    store: StateStore,
    work_order_id: int,
    to: WorkOrderStatus,
    *,
    by: str,
    at: datetime,
    note: str | None = None,
    assignee: str | None = None,
) -> WorkOrder:
    """Move a work order to `to` and record it in its history, in one transaction (see lifecycle.py)."""
    with store.begin() as tx:
        order = tx.get_work_order(work_order_id)
        new, event = transition(order, to, by=by, at=at, note=note, assignee=assignee)
        tx.update_work_order(new)
        tx.add_work_order_event(event)
    log.info("work order %s: %s → %s by %s", new.number, order.status, new.status, by)
    return new


def queue_work_order_opened(
    tx: StateTransaction, order: WorkOrder, notifiers: Sequence[Notifier], tz: ZoneInfo
) -> None:
    """Queue the news of a new work order for each channel, in its language, in the work order's transaction."""
    for notifier in notifiers:
        message = work_order_opened(order, notifier.language, tz)
        tx.queue_notification(
            channel=notifier.name,
            kind="work_order_opened",
            ref=order.number,
            language=notifier.language,
            subject=message.subject,
            body=message.body,
            at=order.created_at,
        )


def announce_work_order(
    tx: StateTransaction,
    order: WorkOrder,
    notifiers: Sequence[Notifier],
    tz: ZoneInfo,
    escalator: Escalator | None = None,
) -> None:
    """Tell the channels of a new work order and, if its priority has a policy, start paging the on-call."""
    queue_work_order_opened(tx, order, notifiers, tz)
    if escalator is not None:
        escalator.start(tx, order, order.created_at)


def _location(device: Device) -> str:
    parts = [device.site, device.building]
    if device.location:
        parts.append(device.location)
    return " / ".join(parts)
