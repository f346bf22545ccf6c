"""The notification outbox: delivers queued notifications through their channels, with retries and a dead letter.

Notifications are queued as rows of the state store in the transaction that causes them (a work order opened),
so nothing is sent for a change that was rolled back, and nothing queued is lost when facmon stops. `deliver_due`
sends the rows that are due. Each attempt is first *claimed* in a committed transaction: `attempts` goes up and
`next_attempt_at` moves out by a lease. Then the channel is called, and the outcome is written in a second
transaction: `sent`, `pending` again after an exponential backoff, or `dead`.

Delivery is at least once, not exactly once. If facmon stops (or crashes) after a channel accepted a message
but before the outcome is committed, the row is still `pending` and is sent again once its lease runs out. That
is the one case of a repeated page; the row id is passed to channels that take an idempotency key, so that a
receiver that honours it can drop the repeat. A row that was claimed and never sent is simply sent after the
lease, never lost. A row already `sent` is never sent again. There is nothing to rebuild on start: rows are rows.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from datetime import datetime, timedelta

from facmon.alerts.notify import Delivery, Notification, Notifier
from facmon.facility.clock import Clock
from facmon.facility.model import NotificationState, QueuedNotification
from facmon.facility.state import StateStore

log = logging.getLogger(__name__)


class Outbox:
    """Sends due notifications through their channels; one stage owns the retries."""

    def __init__(
        self,
        store: StateStore,
        notifiers: Mapping[str, Notifier],
        clock: Clock,
        *,
        max_attempts: int = 8,
        base_delay: timedelta = timedelta(seconds=10),
        max_delay: timedelta = timedelta(hours=1),
        lease: timedelta = timedelta(minutes=2),
        batch: int = 50,
        jitter: float = 0.1,
        rng: random.Random | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._store = store
        self._notifiers = dict(notifiers)
        self._clock = clock
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.lease = lease
        self.batch = batch
        self.jitter = jitter
        # Jitter keeps channels that failed together from being retried in lockstep; seedable for tests.
        self._rng = rng or random.Random()

    def deliver_due(self, now: datetime) -> int:
        """Try each due notification once, oldest first, up to one batch; return how many were sent."""
        sent = 0
        for row in self._store.due_notifications(now, self.batch):
            with self._store.begin() as tx:
                claimed = tx.claim_notification(row.id, now, now + self.lease)
            if claimed is None:  # taken by another attempt since it was read
                continue
            if self._attempt(claimed):
                sent += 1
        return sent

    def backoff(self, attempts: int) -> timedelta:
        """The wait after the `attempts`-th failed attempt: base * 2**(attempts - 1), capped, +- jitter."""
        seconds = min(self.base_delay.total_seconds() * 2.0 ** min(attempts - 1, 60), self.max_delay.total_seconds())
        return timedelta(seconds=seconds * (1 + self._rng.uniform(-self.jitter, self.jitter)))

    def _attempt(self, row: QueuedNotification) -> bool:
        notifier = self._notifiers.get(row.channel)
        if notifier is None:
            delivery = Delivery(False, retryable=False, detail=f"channel {row.channel!r} is no longer configured")
        else:
            delivery = self._send(notifier, row)
        done_at = self._clock.now()
        if delivery.ok:
            state, next_at, sent_at, error = NotificationState.SENT, None, done_at, None
        elif delivery.retryable and row.attempts < self.max_attempts:
            state, next_at, sent_at = NotificationState.PENDING, done_at + self.backoff(row.attempts), None
            error = delivery.detail or "failed"
        else:
            state, next_at, sent_at = NotificationState.DEAD, None, None
            error = delivery.detail or "failed"
            if delivery.retryable:
                error = f"{error} (gave up after {row.attempts} attempts)"
        with self._store.begin() as tx:
            recorded = tx.record_notification_outcome(row, state, next_attempt_at=next_at, sent_at=sent_at, error=error)
        if not recorded:
            log.warning("notification %s: the outcome of attempt %s came after its lease", row.id, row.attempts)
        if state is NotificationState.DEAD:
            log.error("notification %s (%s %s) through %s is dead: %s", row.id, row.kind, row.ref, row.channel, error)
        elif state is NotificationState.PENDING:
            log.warning(
                "notification %s through %s failed (attempt %d), retry at %s: %s",
                row.id,
                row.channel,
                row.attempts,
                next_at,
                error,
            )
        return delivery.ok

    def _send(self, notifier: Notifier, row: QueuedNotification) -> Delivery:
        try:
            # The row id is the idempotency key: the same across retries and after a restart.
            return notifier.send(Notification(row.subject, row.body, key=str(row.id), to=row.address or None))
        except Exception as exc:  # a channel that raises is a failed attempt, not a stopped outbox
            log.exception("channel %s raised on notification %s", row.channel, row.id)
            return Delivery(False, retryable=True, detail=f"{type(exc).__name__}: {exc}")
