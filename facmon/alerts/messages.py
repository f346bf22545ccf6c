"""Message texts, in English and Chinese."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from facmon.alerts.notify import Notification
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
