"""The daily summary: yesterday's alarms by severity, open work orders, breaches and dead notifications."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from facmon.alerts.summary import DailySummary
from facmon.alerts.work_orders.records import open_work_order
from facmon.facility.model import Alarm, AlarmState, Category, Priority, Severity, WorkOrderSource
from facmon.facility.state import StateStore
from tests.conftest import Recorder

SHANGHAI = ZoneInfo("Asia/Shanghai")
# 08:00 on 23 November in Shanghai: the summary is of the 22nd, 00:00 to 24:00 local.
MORNING = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)


def alarm(store: StateStore, severity: Severity, raised: datetime) -> None:
    with store.begin() as tx:
        tx.insert_alarm(
            Alarm(0, "pressure", "pump-1", "riverside", severity, AlarmState.ACTIVE_UNACKED, raised, 1.0, "low")
        )


def test_the_summary_counts_yesterday_local_and_is_sent_once_a_day(state_store: StateStore) -> None:
    store = state_store
    alarm(store, Severity.CRITICAL, MORNING - timedelta(hours=1))  # 07:00 on the 23rd: today, not counted
    alarm(store, Severity.CRITICAL, MORNING - timedelta(hours=9))  # 23:00 on the 22nd
    alarm(store, Severity.MINOR, MORNING - timedelta(hours=20))
    alarm(store, Severity.MINOR, MORNING - timedelta(hours=31, minutes=59))  # 00:01 on the 22nd
    alarm(store, Severity.MAJOR, MORNING - timedelta(hours=32, minutes=1))  # 23:59 on the 21st: not counted
    with store.begin() as tx:
        for priority in (Priority.P1, Priority.P3, Priority.P3):
            open_work_order(
                tx,
                title="t",
                category=Category.WATER,
                priority=priority,
                source=WorkOrderSource.MANUAL,
                at=MORNING - timedelta(hours=2),
                tz=SHANGHAI,
                response_target=None,
            )
    english, chinese = Recorder("duty"), Recorder("值班", "zh")
    summary = DailySummary(store, [english, chinese], SHANGHAI)
    assert summary.send(MORNING) == 2
    assert summary.send(MORNING + timedelta(minutes=1)) == 0  # once a day, restarts or not

    rows = {n.channel: n for n in store.list_notifications().items}
    assert rows["duty"].subject == "facmon daily summary 2026-11-22"
    assert rows["duty"].body == (
        "Alarms: 3 (critical 1, minor 2)\nOpen work orders: 3, of them P1/P2 1\nSLA breaches: 0\nDead notifications: 0"
    )
    assert rows["值班"].subject == "facmon 日报 2026-11-22"
    assert rows["值班"].body.startswith("报警：3（紧急 1，次要 2）\n未完成工单：3，其中 P1/P2 1")
