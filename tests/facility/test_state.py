"""The state store, on a SQLite file and on PostgreSQL."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from facmon.facility.errors import NotFoundError, StateStoreError
from facmon.facility.model import (
    Alarm,
    AlarmEvent,
    AlarmState,
    Category,
    Priority,
    Reject,
    Severity,
    WorkOrder,
    WorkOrderEvent,
    WorkOrderSource,
    WorkOrderStatus,
)
from facmon.facility.state import REJECT_ROW_BYTES, RejectsPruned, StateStore, reject_size

T0 = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)


def alarm(rule: str = "low", device: str = "pump-1", severity: Severity = Severity.MAJOR, at: datetime = T0) -> Alarm:
    return Alarm(0, rule, device, "riverside", severity, AlarmState.ACTIVE_UNACKED, at, 1.2, f"{rule} on {device}")


def work_order(number: str, priority: Priority = Priority.P2, alarm_id: int | None = None) -> WorkOrder:
    return WorkOrder(
        0,
        number,
        "Pump low",
        "pump-1",
        "riverside",
        Category.WATER,
        priority,
        WorkOrderStatus.OPEN,
        WorkOrderSource.ALARM,
        T0,
        T0 + timedelta(minutes=30),
        alarm_id,
    )


def test_alarm_round_trip_keeps_every_field_and_times_stay_aware(state_store: StateStore) -> None:
    with state_store.begin() as tx:
        stored = tx.insert_alarm(alarm())
        tx.add_alarm_event(AlarmEvent(stored.id, T0, "raised", stored.state, stored.severity, value=1.2, note="why"))
    assert stored.id > 0
    loaded = state_store.get_alarm(stored.id)
    assert loaded == replace(stored, updated_at=T0)
    assert loaded.raised_at.tzinfo is not None and loaded.raised_at == T0
    [event] = state_store.alarm_events(stored.id)
    assert (event.kind, event.actor, event.note, event.value) == ("raised", "system", "why", 1.2)


def test_update_and_list_filters(state_store: StateStore) -> None:
    with state_store.begin() as tx:
        a = tx.insert_alarm(alarm("low", "pump-1", Severity.MAJOR, T0))
        b = tx.insert_alarm(alarm("fire", "smoke-1", Severity.CRITICAL, T0 + timedelta(minutes=1)))
        c = tx.insert_alarm(alarm("batt", "smoke-2", Severity.WARNING, T0 + timedelta(minutes=2)))
        tx.update_alarm(replace(c, state=AlarmState.CLEARED, cleared_at=T0 + timedelta(minutes=3)))
    open_ids = [x.id for x in state_store.open_alarms()]
    assert open_ids == [a.id, b.id]
    page = state_store.list_alarms(states=[AlarmState.ACTIVE_UNACKED])
    assert [x.id for x in page.items] == [b.id, a.id]  # critical before major
    assert page.total == 2
    assert state_store.list_alarms().total == 3
    assert [x.id for x in state_store.list_alarms(severities=[Severity.WARNING]).items] == [c.id]
    assert [x.id for x in state_store.list_alarms(device_id="pump-1").items] == [a.id]
    assert state_store.list_alarms(site="elsewhere").total == 0
    assert [x.id for x in state_store.list_alarms(limit=1, offset=1).items] == [a.id]
    assert state_store.count_open_alarms_by_device() == {"pump-1": 1, "smoke-1": 1}


def test_missing_rows_are_not_found(state_store: StateStore) -> None:
    with pytest.raises(NotFoundError):
        state_store.get_alarm(999)
    with pytest.raises(NotFoundError):
        state_store.get_work_order(999)
    with pytest.raises(NotFoundError), state_store.begin() as tx:
        tx.update_alarm(replace(alarm(), id=999))


def test_work_order_numbers_count_per_day(state_store: StateStore) -> None:
    with state_store.begin() as tx:
        numbers = [tx.next_work_order_number("20261122") for _ in range(3)]
        numbers.append(tx.next_work_order_number("20261123"))
    assert numbers == ["WO-20261122-0001", "WO-20261122-0002", "WO-20261122-0003", "WO-20261123-0001"]


def test_a_failed_transaction_leaves_nothing(state_store: StateStore) -> None:
    with pytest.raises(RuntimeError), state_store.begin() as tx:
        tx.insert_alarm(alarm())
        tx.next_work_order_number("20261122")
        raise RuntimeError("boom")
    assert state_store.list_alarms().total == 0
    with state_store.begin() as tx:
        assert tx.next_work_order_number("20261122") == "WO-20261122-0001"


def test_work_orders_with_history_and_urgency_order(state_store: StateStore) -> None:
    with state_store.begin() as tx:
        a = tx.insert_alarm(alarm())
        p3 = tx.insert_work_order(work_order("WO-20261122-0001", Priority.P3))
        p1 = tx.insert_work_order(work_order("WO-20261122-0002", Priority.P1, alarm_id=a.id))
        tx.add_work_order_event(WorkOrderEvent(p1.id, T0, "opened", WorkOrderStatus.OPEN, note="by alarm"))
        tx.update_work_order(replace(p3, status=WorkOrderStatus.CLOSED))
    assert [o.number for o in state_store.list_work_orders().items] == ["WO-20261122-0002", "WO-20261122-0001"]
    open_only = state_store.list_work_orders(statuses=[WorkOrderStatus.OPEN])
    assert [o.id for o in open_only.items] == [p1.id] and open_only.total == 1
    assert [o.id for o in state_store.list_work_orders(alarm_id=a.id).items] == [p1.id]
    loaded = state_store.get_work_order(p1.id)
    assert loaded.due_at == T0 + timedelta(minutes=30)
    assert loaded.due_at is not None and loaded.due_at.astimezone(ZoneInfo("Asia/Shanghai")).hour == 10
    [event] = state_store.work_order_events(p1.id)
    assert (event.kind, event.note) == ("opened", "by alarm")


def test_work_order_filters_and_lifecycle_fields_round_trip(state_store: StateStore) -> None:
    later = T0 + timedelta(minutes=20)
    with state_store.begin() as tx:
        water = tx.insert_work_order(work_order("WO-20261122-0001", Priority.P1))
        lamp = tx.insert_work_order(
            replace(
                work_order("WO-20261122-0002", Priority.P4),
                device_id=None,
                category=Category.GENERAL,
                source=WorkOrderSource.MANUAL,
                status=WorkOrderStatus.RESOLVED,
                assignee="zhang.wei",
                first_response_at=T0 + timedelta(minutes=3),
                resolved_at=later,
            )
        )
        tx.add_work_order_event(
            WorkOrderEvent(
                lamp.id,
                later,
                "transition",
                WorkOrderStatus.RESOLVED,
                "zhang.wei",
                "new lamp",
                from_status=WorkOrderStatus.IN_PROGRESS,
                assignee="zhang.wei",
            )
        )
        assert tx.get_work_order(lamp.id) == replace(lamp, updated_at=T0)
    loaded = state_store.get_work_order(lamp.id)
    assert (loaded.source, loaded.first_response_at, loaded.resolved_at, loaded.closed_at) == (
        WorkOrderSource.MANUAL,
        T0 + timedelta(minutes=3),
        later,
        None,
    )
    [event] = state_store.work_order_events(lamp.id)
    assert (event.from_status, event.status, event.assignee) == (
        WorkOrderStatus.IN_PROGRESS,
        WorkOrderStatus.RESOLVED,
        "zhang.wei",
    )

    def ids(**filters: object) -> list[int]:
        return [o.id for o in state_store.list_work_orders(**filters).items]  # type: ignore[arg-type]

    assert ids(priorities=[Priority.P1]) == [water.id]
    assert ids(priorities=[Priority.P1, Priority.P4]) == [water.id, lamp.id]
    assert ids(categories=[Category.GENERAL]) == [lamp.id]
    assert ids(assignee="zhang.wei") == [lamp.id]
    assert ids(assignee="nobody") == []
    assert ids(device_id="pump-1", categories=[Category.WATER]) == [water.id]
    with pytest.raises(NotFoundError), state_store.begin() as tx:
        tx.get_work_order(999)


def test_work_order_numbers_are_unique(state_store: StateStore) -> None:
    with state_store.begin() as tx:
        tx.insert_work_order(work_order("WO-20261122-0001"))
    with pytest.raises(Exception, match=r"(?i)unique"), state_store.begin() as tx:
        tx.insert_work_order(work_order("WO-20261122-0001"))


def test_rejects_newest_first(state_store: StateStore) -> None:
    with state_store.begin() as tx:
        tx.add_rejects([Reject("t/1", "bad json", T0, "{"), Reject("t/2", "unknown device", T0, "{}")])
    page = state_store.list_rejects()
    assert page.total == 2
    assert [r.reason for _, r in page.items] == ["unknown device", "bad json"]


def add_rejects(store: StateStore, count: int, payload: str, at: datetime = T0) -> list[Reject]:
    topics = [f"facility/riverside/pump/pump-{i:04d}/telemetry" for i in range(count)]
    rejects = [Reject(topic, "not JSON", at, payload) for topic in topics]
    with store.begin() as tx:
        tx.add_rejects(rejects)
    return rejects


def test_the_size_of_rejects_counts_utf8_bytes_of_topic_reason_and_payload(state_store: StateStore) -> None:
    rejects = [
        Reject("facility/riverside/pump/pump-1/telemetry", "payload is not valid UTF-8", T0, "\ufffd(\ufffd"),
        Reject("facility/riverside/pump/泵-1/telemetry", "unknown device '泵-1'", T0, '{"pressure_bar": "高"}'),
    ]
    with state_store.begin() as tx:
        tx.add_rejects(rejects)
    # U+FFFD, as undecodable bytes are kept, is 3 bytes on disk, not 1 character.
    assert reject_size(rejects[0]) == 40 + 26 + 7 + REJECT_ROW_BYTES
    assert state_store.rejects_size() == sum(reject_size(r) for r in rejects)


def test_pruning_deletes_the_oldest_rejects_until_the_rest_fit_the_cap(state_store: StateStore) -> None:
    rejects = add_rejects(state_store, 2500, "x" * 120)  # more than two chunks of deletes
    one = reject_size(rejects[0])
    assert state_store.prune_rejects(max_bytes=3000 * one, older_than=T0 - timedelta(days=30)) == RejectsPruned(
        0, 0, 2500 * one
    )
    pruned = state_store.prune_rejects(max_bytes=600 * one + one // 2, older_than=T0 - timedelta(days=30))
    assert pruned == RejectsPruned(expired=0, over_cap=1900, remaining_bytes=600 * one)
    assert state_store.rejects_size() == 600 * one
    page = state_store.list_rejects(limit=1000)
    assert page.total == 600
    assert page.items[-1][1].topic == rejects[1900].topic  # the newest are kept


def test_pruning_deletes_rejects_older_than_the_retention_first(state_store: StateStore) -> None:
    add_rejects(state_store, 1200, "{", at=T0 - timedelta(days=31))
    recent = add_rejects(state_store, 3, "{", at=T0 - timedelta(days=29))
    pruned = state_store.prune_rejects(max_bytes=1_000_000, older_than=T0 - timedelta(days=30))
    assert pruned == RejectsPruned(expired=1200, over_cap=0, remaining_bytes=sum(reject_size(r) for r in recent))
    assert state_store.list_rejects().total == 3


def test_the_space_of_pruned_rejects_is_reused_by_the_next(sqlite_store: StateStore, tmp_path: Path) -> None:
    """SQLite keeps the pages of deleted rows in the file and fills them again: writing ten times the cap, a
    cap's worth between two prunes, the file stops growing after the first rounds, at the cap and one round."""
    cap = 2_000_000

    def round_of_writes() -> int:
        for _ in range(5):
            add_rejects(sqlite_store, 100, "x" * 4000)
        assert sqlite_store.prune_rejects(max_bytes=cap, older_than=T0 - timedelta(days=30)).remaining_bytes <= cap
        return (tmp_path / "state.db").stat().st_size

    settled = max(round_of_writes() for _ in range(3))
    assert settled < 3 * cap
    for _ in range(7):
        assert round_of_writes() <= settled + 64 * 1024, "pages of deleted rejects are not being reused"
    # The write-ahead log is checkpointed back into the file every 1000 pages: its size is set by that and by
    # the largest transaction, not by how much was ever written.
    assert (tmp_path / "state.db-wal").stat().st_size < 8 * 1024 * 1024


def test_naive_datetimes_are_refused(state_store: StateStore) -> None:
    with pytest.raises(Exception, match="naive"), state_store.begin() as tx:
        tx.insert_alarm(alarm(at=datetime(2026, 1, 1)))


def test_unreachable_database_is_one_clear_error() -> None:
    with pytest.raises(StateStoreError, match="cannot open the state store"):
        StateStore.open("postgresql://nobody@127.0.0.1:1/none")
