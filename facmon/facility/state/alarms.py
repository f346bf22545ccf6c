"""Alarms, their audit trail and follow-ups, floods, and the figures of the alarm system and the monthly report."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, delete, func, insert, select, update
from sqlalchemy.sql import LABEL_STYLE_TABLENAME_PLUS_COL, ColumnElement, Select

from facmon.facility.errors import NotFoundError
from facmon.facility.model import ACTIVE_STATES, Alarm, AlarmEvent, AlarmFlood, AlarmState, AlarmTransition, Severity
from facmon.facility.state.rows import Page, Reads, Writes, alarm_row, from_row, prefixed, read_one, row_values
from facmon.facility.state.schema import alarm_events, alarm_floods, alarm_followups, alarms, work_order_events


@dataclass(frozen=True, slots=True)
class AlarmCount:
    """How many alarms a rule raised on a device at one severity: the raw material of the monthly report."""

    device_id: str
    site: str
    rule: str
    severity: Severity
    count: int


def _severity_order() -> Any:
    return case({s.value: 5 - s.rank for s in Severity}, value=alarms.c.severity, else_=9)


class AlarmReads(Reads):
    """Reads of alarms, their audit trail, follow-ups and floods."""

    def open_alarms(self) -> list[Alarm]:
        """Alarms that are not cleared: the ones the rule engine and operators still have to deal with."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(alarms).where(alarms.c.state.in_(ACTIVE_STATES)).order_by(alarms.c.id))
            return [from_row(Alarm, row) for row in rows.mappings()]

    def get_alarm(self, alarm_id: int) -> Alarm:
        with self.engine.connect() as conn:
            return read_one(conn, alarms, Alarm, alarm_id, "alarm")

    def list_alarms(
        self,
        *,
        states: Sequence[AlarmState] | None = None,
        shelved: bool | None = None,
        suppressed: bool | None = None,
        severities: Sequence[Severity] = (),
        site: str | None = None,
        device_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> Page[Alarm]:
        """Alarms, most severe first, then newest first."""
        query = select(alarms)
        if states is not None:
            query = query.where(alarms.c.state.in_(states))
        if shelved is not None:
            query = query.where(alarms.c.shelved == shelved)
        if suppressed is not None:
            query = query.where(alarms.c.suppressed == suppressed)
        if severities:
            query = query.where(alarms.c.severity.in_(severities))
        if site:
            query = query.where(alarms.c.site == site)
        if device_id:
            query = query.where(alarms.c.device_id == device_id)
        ordered = query.order_by(_severity_order(), alarms.c.raised_at.desc(), alarms.c.id.desc())
        with self.engine.connect() as conn:
            total = conn.execute(select(func.count()).select_from(query.subquery())).scalar_one()
            rows = conn.execute(ordered.limit(limit).offset(offset)).mappings()
            return Page([from_row(Alarm, row) for row in rows], total)

    def alarm_events(self, alarm_id: int) -> list[AlarmEvent]:
        self.get_alarm(alarm_id)
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(alarm_events).where(alarm_events.c.alarm_id == alarm_id).order_by(alarm_events.c.id)
            )
            return [from_row(AlarmEvent, row) for row in rows.mappings()]

    def alarm_changes_after(self, after_id: int, limit: int) -> list[tuple[AlarmEvent, Alarm]]:
        return self._alarm_changes(
            select(alarm_events, alarms).join(alarms, alarms.c.id == alarm_events.c.alarm_id),
            alarm_events.c.id > after_id,
            limit,
        )

    def pending_followups(
        self, before: datetime, limit: int = 100, *, sites: Collection[str] | None = None
    ) -> list[tuple[AlarmEvent, Alarm]]:
        """Alarm changes committed before `before` whose consequences are not, oldest first; of `sites` only."""
        where = alarm_followups.c.created_at < before
        if sites is not None:
            where = and_(where, alarms.c.site.in_(list(sites)))
        return self._alarm_changes(
            select(alarm_events, alarms)
            .join(alarm_followups, alarm_followups.c.event_id == alarm_events.c.id)
            .join(alarms, alarms.c.id == alarm_events.c.alarm_id),
            where,
            limit,
        )

    def _alarm_changes(
        self, joined: Select[Any], where: ColumnElement[bool], limit: int
    ) -> list[tuple[AlarmEvent, Alarm]]:
        """Audit events with their alarm as it is now, oldest first."""
        query = joined.where(where).order_by(alarm_events.c.id).limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(query.set_label_style(LABEL_STYLE_TABLENAME_PLUS_COL)).mappings().all()
        return [
            (from_row(AlarmEvent, prefixed(row, "alarm_events_")), from_row(Alarm, prefixed(row, "alarms_")))
            for row in rows
        ]

    def last_change_ids(self) -> tuple[int, int]:
        """The newest alarm event's and work-order event's ids: where a stream that asks for nothing old starts."""
        with self.engine.connect() as conn:
            a = conn.execute(select(func.max(alarm_events.c.id))).scalar_one_or_none()
            w = conn.execute(select(func.max(work_order_events.c.id))).scalar_one_or_none()
        return a or 0, w or 0

    def count_open_alarms_by_device(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(alarms.c.device_id, func.count())
                .where(alarms.c.state.in_(ACTIVE_STATES))
                .group_by(alarms.c.device_id)
            )
            return {device_id: count for device_id, count in rows}

    def alarm_transitions(
        self, start: datetime, end: datetime, kinds: Iterable[str], *, site: str | None = None
    ) -> list[AlarmTransition]:
        """Alarm events of these kinds after `start` up to and including `end`, oldest first."""
        query = (
            select(
                alarm_events.c.id,
                alarm_events.c.alarm_id,
                alarms.c.site,
                alarms.c.rule,
                alarms.c.device_id,
                alarm_events.c.kind,
                alarm_events.c.severity,
                alarm_events.c.at,
            )
            .join(alarms, alarms.c.id == alarm_events.c.alarm_id)
            .where(alarm_events.c.at > start, alarm_events.c.at <= end, alarm_events.c.kind.in_(list(kinds)))
            .order_by(alarm_events.c.at, alarm_events.c.id)
        )
        if site:
            query = query.where(alarms.c.site == site)
        with self.engine.connect() as conn:
            return [from_row(AlarmTransition, row) for row in conn.execute(query).mappings()]

    def active_alarms_raised_before(self, before: datetime, *, site: str | None = None) -> list[Alarm]:
        """Alarms not yet cleared that were raised before `before`, oldest first."""
        query = select(alarms).where(alarms.c.state.in_(ACTIVE_STATES), alarms.c.raised_at < before)
        if site:
            query = query.where(alarms.c.site == site)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(alarms.c.raised_at, alarms.c.id)).mappings()
            return [from_row(Alarm, row) for row in rows]

    def open_floods(self) -> list[AlarmFlood]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(alarm_floods).where(alarm_floods.c.ended_at.is_(None)).order_by(alarm_floods.c.id)
            ).mappings()
            return [from_row(AlarmFlood, row) for row in rows]

    def floods_overlapping(self, start: datetime, end: datetime, *, site: str | None = None) -> list[AlarmFlood]:
        """Floods that were open at some time after `start` up to and including `end`, oldest first."""
        query = select(alarm_floods).where(
            alarm_floods.c.started_at <= end,
            (alarm_floods.c.ended_at.is_(None)) | (alarm_floods.c.ended_at > start),
        )
        if site:
            query = query.where(alarm_floods.c.site == site)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(alarm_floods.c.started_at, alarm_floods.c.id)).mappings()
            return [from_row(AlarmFlood, row) for row in rows]

    def alarm_counts(self, start: datetime, end: datetime) -> list[AlarmCount]:
        """Alarms raised from `start` up to `end` (excluded), not suppressed, counted per device, rule and severity."""
        query = (
            select(alarms.c.device_id, alarms.c.site, alarms.c.rule, alarms.c.severity, func.count().label("count"))
            .where(alarms.c.raised_at >= start, alarms.c.raised_at < end, alarms.c.suppressed.is_(False))
            .group_by(alarms.c.device_id, alarms.c.site, alarms.c.rule, alarms.c.severity)
            .order_by(alarms.c.device_id, alarms.c.rule, alarms.c.severity)
        )
        with self.engine.connect() as conn:
            return [from_row(AlarmCount, row) for row in conn.execute(query).mappings()]

    def first_acknowledgements(self, start: datetime, end: datetime) -> list[tuple[datetime, datetime | None]]:
        """Of each alarm raised from `start` up to `end`, not suppressed: when it was raised and first acknowledged."""
        first_ack = (
            select(alarm_events.c.alarm_id, func.min(alarm_events.c.at).label("at"))
            .where(alarm_events.c.kind == "acknowledged")
            .group_by(alarm_events.c.alarm_id)
            .subquery()
        )
        query = (
            select(alarms.c.raised_at, first_ack.c.at)
            .outerjoin(first_ack, first_ack.c.alarm_id == alarms.c.id)
            .where(alarms.c.raised_at >= start, alarms.c.raised_at < end, alarms.c.suppressed.is_(False))
            .order_by(alarms.c.id)
        )
        with self.engine.connect() as conn:
            return [(raised, acked) for raised, acked in conn.execute(query)]


class AlarmWrites(Writes):
    """Writes of alarms, audit events, follow-ups and floods, in the caller's transaction."""

    def get_alarm(self, alarm_id: int, *, lock: bool = False) -> Alarm:
        """Read an alarm; with `lock`, its row locked until the transaction ends (PostgreSQL)."""
        return read_one(self.conn, alarms, Alarm, alarm_id, "alarm", lock=lock)

    def insert_alarm(self, alarm: Alarm) -> Alarm:
        """Insert a new alarm (its `id` is ignored) and return it with the id it was given."""
        values = alarm_row(alarm)
        return replace(alarm, id=self._insert(alarms, values), updated_at=values["updated_at"])

    def update_alarm(self, alarm: Alarm) -> None:
        result = self.conn.execute(update(alarms).where(alarms.c.id == alarm.id).values(alarm_row(alarm)))
        if result.rowcount == 0:
            raise NotFoundError("alarm", alarm.id)

    def add_alarm_event(self, event: AlarmEvent, *, follow_up: bool = False) -> AlarmEvent:
        """Record the event; with `follow_up`, also that its consequences are still to be committed."""
        recorded = replace(event, id=self._insert(alarm_events, row_values(event)))
        if follow_up:
            self.conn.execute(insert(alarm_followups).values(event_id=recorded.id, created_at=event.at))
        return recorded

    def take_followup(self, event_id: int) -> bool:
        """Mark the event's consequences as committed with this transaction; False when they already were."""
        deleted = self.conn.execute(delete(alarm_followups).where(alarm_followups.c.event_id == event_id))
        return bool(deleted.rowcount)

    def insert_flood(self, site: str, started_at: datetime, peak: int) -> AlarmFlood:
        new_id = self.conn.execute(
            insert(alarm_floods).values(site=site, started_at=started_at, peak=peak).returning(alarm_floods.c.id)
        ).scalar_one()
        return AlarmFlood(new_id, site, started_at, None, peak)

    def update_flood(self, flood: AlarmFlood) -> None:
        """Write a flood's peak and end."""
        result = self.conn.execute(
            update(alarm_floods).where(alarm_floods.c.id == flood.id).values(peak=flood.peak, ended_at=flood.ended_at)
        )
        if result.rowcount == 0:
            raise NotFoundError("alarm flood", flood.id)
