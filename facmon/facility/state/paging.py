"""The notification outbox (queued, claimed, sent or dead) and the escalations that page the people on call."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import SQLAlchemyError

from facmon.facility.errors import StateStoreError
from facmon.facility.model import Escalation, EscalationState, NotificationState, QueuedNotification
from facmon.facility.state.rows import Page, Reads, Writes, error_reason, from_row, read_one, row_values, without_id
from facmon.facility.state.schema import escalations, notifications

LAST_ERROR_MAX = 1000


class PagingReads(Reads):
    """Reads of the notification outbox and the escalations."""

    def get_notification(self, notification_id: int) -> QueuedNotification:
        with self.engine.connect() as conn:
            return read_one(conn, notifications, QueuedNotification, notification_id, "notification")

    def due_notifications(
        self, now: datetime, limit: int, *, except_channels: Iterable[str] = ()
    ) -> list[QueuedNotification]:
        """Pending notifications whose next attempt is due, oldest first, leaving out those of `except_channels`."""
        query = select(notifications).where(
            notifications.c.state == NotificationState.PENDING, notifications.c.next_attempt_at <= now
        )
        if skipped := list(except_channels):
            query = query.where(notifications.c.channel.not_in(skipped))
        query = query.order_by(notifications.c.created_at, notifications.c.id).limit(limit)
        with self.engine.connect() as conn:
            return [from_row(QueuedNotification, row) for row in conn.execute(query).mappings()]

    def list_notifications(
        self, *, states: Sequence[NotificationState] | None = None, limit: int = 100, offset: int = 0
    ) -> Page[QueuedNotification]:
        """The notification log, newest first."""
        query = select(notifications)
        if states is not None:
            query = query.where(notifications.c.state.in_(states))
        ordered = query.order_by(notifications.c.id.desc())
        with self.engine.connect() as conn:
            total = conn.execute(select(func.count()).select_from(query.subquery())).scalar_one()
            rows = conn.execute(ordered.limit(limit).offset(offset)).mappings()
            return Page([from_row(QueuedNotification, row) for row in rows], total)

    def notification_counts(self) -> dict[NotificationState, int]:
        """How many notifications are in each state."""
        query = select(notifications.c.state, func.count()).group_by(notifications.c.state)
        try:
            with self.engine.connect() as conn:
                counted = {NotificationState(state): count for state, count in conn.execute(query)}
        except SQLAlchemyError as exc:
            raise StateStoreError(f"state store unreachable: {error_reason(exc)}") from None
        return {state: counted.get(state, 0) for state in NotificationState}

    def escalation_counts(self) -> dict[EscalationState, int]:
        query = select(escalations.c.state, func.count()).group_by(escalations.c.state)
        with self.engine.connect() as conn:
            return {EscalationState(state): count for state, count in conn.execute(query)}

    def due_escalations(self, now: datetime, limit: int = 100) -> list[Escalation]:
        """Escalations whose next paging is due by `now`, earliest first."""
        query = (
            select(escalations)
            .where(
                escalations.c.state.in_((EscalationState.ACTIVE, EscalationState.ACKNOWLEDGED)),
                escalations.c.next_at <= now,
            )
            .order_by(escalations.c.next_at, escalations.c.id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [from_row(Escalation, row) for row in conn.execute(query).mappings()]

    def get_escalation(self, escalation_id: int) -> Escalation:
        with self.engine.connect() as conn:
            return read_one(conn, escalations, Escalation, escalation_id, "escalation")

    def escalation_of(self, work_order_id: int) -> Escalation | None:
        with self.engine.connect() as conn:
            row = (
                conn.execute(select(escalations).where(escalations.c.work_order_id == work_order_id)).mappings().first()
            )
        return None if row is None else from_row(Escalation, row)

    def pages_of(self, work_order_ref: str) -> list[QueuedNotification]:
        """The pages sent (or queued) for a work order, oldest first."""
        query = (
            select(notifications)
            .where(notifications.c.ref.like(f"{work_order_ref}/%"), notifications.c.recipient.is_not(None))
            .order_by(notifications.c.id)
        )
        with self.engine.connect() as conn:
            return [from_row(QueuedNotification, row) for row in conn.execute(query).mappings()]


class PagingWrites(Writes):
    """Writes of queued notifications, their claims and outcomes, escalations, in the caller's transaction."""

    def queue_notification(
        self,
        *,
        channel: str,
        kind: str,
        ref: str,
        language: str,
        subject: str,
        body: str,
        at: datetime,
        recipient: str | None = None,
        address: str | None = None,
    ) -> int | None:
        """Queue a message for a channel, due at once; None when (channel, kind, ref) was queued before."""
        statement = (
            self._upsert(notifications)
            .values(
                channel=channel,
                kind=kind,
                ref=ref,
                language=language,
                subject=subject,
                body=body,
                state=NotificationState.PENDING,
                attempts=0,
                next_attempt_at=at,
                created_at=at,
                recipient=recipient,
                address=address,
            )
            .on_conflict_do_nothing(index_elements=["channel", "kind", "ref"])
            .returning(notifications.c.id)
        )
        new_id: int | None = self.conn.execute(statement).scalar_one_or_none()
        return new_id

    def claim_notification(
        self, notification_id: int, now: datetime, lease_until: datetime
    ) -> QueuedNotification | None:
        """Count an attempt and hold the row until `lease_until`; None if it is not pending and due (any more)."""
        row = (
            self.conn.execute(
                update(notifications)
                .where(
                    notifications.c.id == notification_id,
                    notifications.c.state == NotificationState.PENDING,
                    notifications.c.next_attempt_at <= now,
                )
                .values(attempts=notifications.c.attempts + 1, next_attempt_at=lease_until)
                .returning(*notifications.c)
            )
            .mappings()
            .first()
        )
        return None if row is None else from_row(QueuedNotification, row)

    def record_notification_outcome(
        self,
        claimed: QueuedNotification,
        state: NotificationState,
        *,
        next_attempt_at: datetime | None = None,
        sent_at: datetime | None = None,
        error: str | None = None,
    ) -> bool:
        """Write the outcome of the attempt `claimed` stands for; False if another attempt has claimed it since."""
        values: dict[str, Any] = {"state": state, "sent_at": sent_at}
        if next_attempt_at is not None:
            values["next_attempt_at"] = next_attempt_at
        if error is not None:
            values["last_error"] = error[:LAST_ERROR_MAX]
        result = self.conn.execute(
            update(notifications)
            .where(
                notifications.c.id == claimed.id,
                notifications.c.state == NotificationState.PENDING,
                notifications.c.attempts == claimed.attempts,
            )
            .values(values)
        )
        return bool(result.rowcount)

    def insert_escalation(self, escalation: Escalation) -> Escalation:
        return replace(escalation, id=self._insert(escalations, row_values(escalation)))

    def escalation_of(self, work_order_id: int) -> Escalation | None:
        row = (
            self.conn.execute(select(escalations).where(escalations.c.work_order_id == work_order_id))
            .mappings()
            .first()
        )
        return None if row is None else from_row(Escalation, row)

    def get_escalation(self, escalation_id: int) -> Escalation:
        """Read an escalation and, on PostgreSQL, lock its row until the transaction ends."""
        return read_one(self.conn, escalations, Escalation, escalation_id, "escalation", lock=True)

    def update_escalation(self, before: Escalation, after: Escalation) -> bool:
        """Write `after` if the row is still as `before` left it (same state and pagings); False if it moved on."""
        result = self.conn.execute(
            update(escalations)
            .where(
                escalations.c.id == before.id,
                escalations.c.state == before.state,
                escalations.c.pages == before.pages,
            )
            .values(without_id(row_values(after)))
        )
        return bool(result.rowcount)
