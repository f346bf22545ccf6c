"""The daily summary: what yesterday brought and what is still open, to every channel once a day."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from facmon.alerts.notifications.notifier import Notification, Notifier
from facmon.alerts.work_orders.lifecycle import OPEN_STATUSES
from facmon.alerts.work_orders.sla import sla_breaches
from facmon.facility.model import NotificationState, Priority, Severity
from facmon.facility.state import StateStore

log = logging.getLogger(__name__)

_SEVERITY_ZH = {"critical": "紧急", "major": "重要", "minor": "次要", "warning": "提示"}


class DailySummary:
    def __init__(self, store: StateStore, notifiers: Sequence[Notifier], tz: ZoneInfo) -> None:
        self._store = store
        self._notifiers = notifiers
        self._tz = tz

    def send(self, now: datetime) -> int:
        """Queue the summary of the local day before `now` for each channel, once per day; how many were queued."""
        today = now.astimezone(self._tz).date()
        start = datetime.combine(today - timedelta(days=1), time(0), self._tz)
        end = datetime.combine(today, time(0), self._tz)
        raised = Counter[Severity]()
        for count in self._store.alarm_counts(start, end):
            raised[count.severity] += count.count
        open_orders = Counter(
            {p: self._store.list_work_orders(statuses=OPEN_STATUSES, priorities=[p], limit=1).total for p in Priority}
        )
        breaches = sla_breaches(self._store, start, end)
        breached = breaches.response + breaches.resolve + breaches.acknowledge
        dead = self._store.notification_counts()[NotificationState.DEAD]
        day = start.date().isoformat()
        queued = 0
        with self._store.begin() as tx:
            for notifier in self._notifiers:
                message = _render(notifier.language, day, raised, open_orders, breached, dead)
                new = tx.queue_notification(
                    channel=notifier.name,
                    kind="daily_summary",
                    ref=day,
                    language=notifier.language,
                    subject=message.subject,
                    body=message.body,
                    at=now,
                )
                queued += new is not None
        if queued:
            log.info("daily summary for %s queued for %d channels", day, queued)
        return queued


def _render(
    language: str, day: str, raised: Counter[Severity], open_orders: Counter[Priority], breaches: int, dead: int
) -> Notification:
    order = [s for s in Severity if raised[s]]
    urgent = open_orders[Priority.P1] + open_orders[Priority.P2]
    if language == "zh":
        alarms = "，".join(f"{_SEVERITY_ZH[s]} {raised[s]}" for s in order) or "无"
        body = (
            f"报警：{sum(raised.values())}（{alarms}）\n"
            f"未完成工单：{sum(open_orders.values())}，其中 P1/P2 {urgent}\n"
            f"超时（SLA）：{breaches}\n"
            f"发送失败的通知：{dead}"
        )
        return Notification(subject=f"facmon 日报 {day}", body=body)
    alarms = ", ".join(f"{s} {raised[s]}" for s in order) or "none"
    body = (
        f"Alarms: {sum(raised.values())} ({alarms})\n"
        f"Open work orders: {sum(open_orders.values())}, of them P1/P2 {urgent}\n"
        f"SLA breaches: {breaches}\n"
        f"Dead notifications: {dead}"
    )
    return Notification(subject=f"facmon daily summary {day}", body=body)
