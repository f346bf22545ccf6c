"""Work orders: their numbers, rows, history lines and the marks (breaches, acknowledgements) on them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from sqlalchemy import func, insert, select, update
from sqlalchemy.sql import LABEL_STYLE_TABLENAME_PLUS_COL

from facmon.facility.errors import NotFoundError
from facmon.facility.model import Category, Priority, WorkOrder, WorkOrderEvent, WorkOrderSource, WorkOrderStatus
from facmon.facility.state.rows import Page, Reads, Writes, from_row, prefixed, read_one, row_values, work_order_row
from facmon.facility.state.schema import alarms, work_order_counters, work_order_events, work_orders


class WorkOrderReads(Reads):
    """Reads of work orders and their history."""

    def work_order_changes_after(self, after_id: int, limit: int) -> list[tuple[WorkOrderEvent, WorkOrder]]:
        query = (
            select(work_order_events, work_orders)
            .join(work_orders, work_orders.c.id == work_order_events.c.work_order_id)
            .where(work_order_events.c.id > after_id)
            .order_by(work_order_events.c.id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query.set_label_style(LABEL_STYLE_TABLENAME_PLUS_COL)).mappings().all()
        return [
            (
                from_row(WorkOrderEvent, prefixed(row, "work_order_events_")),
                from_row(WorkOrder, prefixed(row, "work_orders_")),
            )
            for row in rows
        ]

    def get_work_order(self, work_order_id: int) -> WorkOrder:
        with self.engine.connect() as conn:
            return read_one(conn, work_orders, WorkOrder, work_order_id, "work order")

    def list_work_orders(
        self,
        *,
        statuses: Sequence[WorkOrderStatus] | None = None,
        priorities: Sequence[Priority] = (),
        categories: Sequence[Category] = (),
        sources: Sequence[WorkOrderSource] = (),
        device_id: str | None = None,
        assignee: str | None = None,
        alarm_id: int | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> Page[WorkOrder]:
        """Work orders, most urgent first (priority, then due time)."""
        query = select(work_orders)
        if sources:
            query = query.where(work_orders.c.source.in_(sources))
        if statuses is not None:
            query = query.where(work_orders.c.status.in_(statuses))
        if priorities:
            query = query.where(work_orders.c.priority.in_(priorities))
        if categories:
            query = query.where(work_orders.c.category.in_(categories))
        if assignee:
            query = query.where(work_orders.c.assignee == assignee)
        if device_id:
            query = query.where(work_orders.c.device_id == device_id)
        if alarm_id is not None:
            query = query.where(work_orders.c.alarm_id == alarm_id)
        ordered = query.order_by(work_orders.c.priority, work_orders.c.due_at, work_orders.c.id)
        with self.engine.connect() as conn:
            total = conn.execute(select(func.count()).select_from(query.subquery())).scalar_one()
            rows = conn.execute(ordered.limit(limit).offset(offset)).mappings()
            return Page([from_row(WorkOrder, row) for row in rows], total)

    def work_order_events(self, work_order_id: int) -> list[WorkOrderEvent]:
        self.get_work_order(work_order_id)
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(work_order_events)
                .where(work_order_events.c.work_order_id == work_order_id)
                .order_by(work_order_events.c.id)
            )
            return [from_row(WorkOrderEvent, row) for row in rows.mappings()]

    def work_order_marks(self, work_order_ids: Sequence[int], kinds: Sequence[str]) -> dict[int, set[str]]:
        """Which of `kinds` each work order's history has."""
        marks: dict[int, set[str]] = {}
        if not work_order_ids:
            return marks
        for chunk in range(0, len(work_order_ids), 500):
            ids = list(work_order_ids[chunk : chunk + 500])
            query = (
                select(work_order_events.c.work_order_id, work_order_events.c.kind)
                .where(work_order_events.c.work_order_id.in_(ids), work_order_events.c.kind.in_(list(kinds)))
                .distinct()
            )
            with self.engine.connect() as conn:
                for work_order_id, kind in conn.execute(query):
                    marks.setdefault(work_order_id, set()).add(kind)
        return marks

    def count_work_order_events(self, kinds: Sequence[str], start: datetime, end: datetime) -> dict[str, int]:
        """How many work order events of each of `kinds` happened from `start` up to (not including) `end`."""
        query = (
            select(work_order_events.c.kind, func.count())
            .where(
                work_order_events.c.kind.in_(list(kinds)),
                work_order_events.c.at >= start,
                work_order_events.c.at < end,
            )
            .group_by(work_order_events.c.kind)
        )
        with self.engine.connect() as conn:
            counted: dict[str, int] = {kind: count for kind, count in conn.execute(query)}
        return {kind: counted.get(kind, 0) for kind in kinds}

    def work_orders_created(self, start: datetime, end: datetime) -> list[WorkOrder]:
        """Work orders opened from `start` up to (not including) `end`, oldest first."""
        query = (
            select(work_orders)
            .where(work_orders.c.created_at >= start, work_orders.c.created_at < end)
            .order_by(work_orders.c.created_at, work_orders.c.id)
        )
        with self.engine.connect() as conn:
            return [from_row(WorkOrder, row) for row in conn.execute(query).mappings()]


class WorkOrderWrites(Writes):
    """Writes of work orders, their numbers and history, in the caller's transaction."""

    def work_orders_of_alarm(self, alarm_id: int, statuses: Sequence[WorkOrderStatus] | None = None) -> list[WorkOrder]:
        query = select(work_orders).where(work_orders.c.alarm_id == alarm_id)
        if statuses is not None:
            query = query.where(work_orders.c.status.in_(statuses))
        rows = self.conn.execute(query.order_by(work_orders.c.id)).mappings()
        return [from_row(WorkOrder, row) for row in rows]

    def next_work_order_number(self, day: str) -> str:
        """Allocate WO-YYYYMMDD-NNNN for `day` (YYYYMMDD, in the facility's timezone)."""
        bumped = self.conn.execute(
            update(work_order_counters)
            .where(work_order_counters.c.day == day)
            .values(last=work_order_counters.c.last + 1)
            .returning(work_order_counters.c.last)
        ).scalar_one_or_none()
        if bumped is None:
            self.conn.execute(insert(work_order_counters).values(day=day, last=1))
            bumped = 1
        return f"WO-{day}-{bumped:04d}"

    def get_work_order(self, work_order_id: int) -> WorkOrder:
        """Read a work order and, on PostgreSQL, lock its row until the transaction ends, so changes queue up."""
        return read_one(self.conn, work_orders, WorkOrder, work_order_id, "work order", lock=True)

    def insert_work_order(self, order: WorkOrder) -> WorkOrder:
        values = work_order_row(order)
        return replace(order, id=self._insert(work_orders, values), updated_at=values["updated_at"])

    def update_work_order(self, order: WorkOrder) -> None:
        result = self.conn.execute(
            update(work_orders).where(work_orders.c.id == order.id).values(work_order_row(order))
        )
        if result.rowcount == 0:
            raise NotFoundError("work order", order.id)

    def add_work_order_event(self, event: WorkOrderEvent) -> None:
        self._insert(work_order_events, row_values(event))

    def has_work_order_event(self, work_order_id: int, kind: str) -> bool:
        """Whether the work order's history has a line of this kind."""
        query = select(work_order_events.c.id).where(
            work_order_events.c.work_order_id == work_order_id, work_order_events.c.kind == kind
        )
        return self.conn.execute(query.limit(1)).first() is not None

    def unfinished_work_order_of_rule(
        self, device_id: str, rule: str, since: datetime, statuses: Sequence[WorkOrderStatus]
    ) -> WorkOrder | None:
        """The newest work order in `statuses`, opened since `since` by an alarm of `rule` on the device."""
        query = (
            select(work_orders)
            .join(alarms, work_orders.c.alarm_id == alarms.c.id)
            .where(
                work_orders.c.device_id == device_id,
                alarms.c.rule == rule,
                work_orders.c.status.in_(statuses),
                work_orders.c.created_at >= since,
            )
            .order_by(work_orders.c.created_at.desc(), work_orders.c.id.desc())
            .limit(1)
        )
        row = self.conn.execute(query).mappings().first()
        return from_row(WorkOrder, row) if row is not None else None
