"""Message texts, in English and Chinese."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from facmon.alerts.notifications.notifier import Notification
from facmon.facility.model import WorkOrder

_PRIORITY_ZH = {"P1": "P1 紧急", "P2": "P2 高", "P3": "P3 中", "P4": "P4 低"}


def work_order_opened(order: WorkOrder, language: str, tz: ZoneInfo) -> Notification:
    due = order.due_at.astimezone(tz).strftime("%Y-%m-%d %H:%M") if order.due_at else "-"
    if language == "zh":
        return Notification(
            subject=f"{order.number} [{_PRIORITY_ZH[order.priority]}] {order.title}",
            body=f"设备 {order.device_id or '-'}，位置 {order.location or '-'}，响应期限 {due}",
        )
    return Notification(
        subject=f"{order.number} [{order.priority}] {order.title}",
        body=f"device {order.device_id or '-'} at {order.location or '-'}, respond by {due}",
    )


def page(order: WorkOrder, language: str, tz: ZoneInfo, *, reason: str, ack_url: str | None) -> Notification:
    """A page to one person about a work order; `reason` is `page`, `reminder` (acknowledged, unresolved) or
    `breach` (its SLA is breached)."""
    due = order.due_at.astimezone(tz).strftime("%Y-%m-%d %H:%M") if order.due_at else "-"
    if language == "zh":
        lead = {"page": "请处理", "reminder": "已确认但仍未解决", "breach": "已超出服务时限"}[reason]
        body = f"{lead}：{order.title}\n设备 {order.device_id or '-'}，位置 {order.location or '-'}，响应期限 {due}"
        if ack_url and reason == "page":
            body += f"\n确认接单：{ack_url}"
        return Notification(subject=f"{order.number} [{_PRIORITY_ZH[order.priority]}] {lead}", body=body)
    lead = {"page": "Please respond", "reminder": "Acknowledged, still unresolved", "breach": "SLA breached"}[reason]
    body = f"{lead}: {order.title}\ndevice {order.device_id or '-'} at {order.location or '-'}, respond by {due}"
    if ack_url and reason == "page":
        body += f"\nAcknowledge: {ack_url}"
    return Notification(subject=f"{order.number} [{order.priority}] {lead}", body=body)
