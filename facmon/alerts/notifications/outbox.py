"""The notification outbox: delivers queued notifications through their channels, with retries and a dead letter.

Notifications are queued as rows of the state store in the transaction that causes them (a work order opened),
so nothing is sent for a change that was rolled back, and nothing queued is lost when facmon stops. `deliver_due`
sends the rows that are due. Each attempt is first *claimed* in a committed transaction: `attempts` goes up and
`next_attempt_at` moves out by a lease, the channel's timeout plus a margin, so that no other attempt takes the
row while this one may still be talking to the channel. Then the channel is called, and the outcome is written
in a second transaction: `sent`, `pending` again after an exponential backoff, or `dead`.

Channels do not wait for each other. Each channel's due rows go to a worker thread of its own, which sends them
one after the other, oldest first; a channel that hangs (a mail server that accepts and never answers) holds up
its own messages only. `deliver_due` waits for the workers it started at most `wait` (the service passes one
scheduler cycle), then returns and leaves a slow one to finish; until it has, that channel is handed nothing new.

Delivery is at least once, not exactly once. If facmon stops (or crashes) after a channel accepted a message
but before the outcome is committed, the row is still `pending` and is sent again once its lease runs out. That
is the one case of a repeated page; the row id is passed to channels that take an idempotency key, so that a
receiver that honours it can drop the repeat. A row that was claimed and never sent is simply sent after the
lease, never lost. A row already `sent` is never sent again. There is nothing to rebuild on start: rows are rows.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from facmon.alerts.notifications.notifier import Delivery, Notification, Notifier
from facmon.alerts.notifications.redaction import redact
from facmon.facility.clock import Clock
from facmon.facility.model import NotificationState, QueuedNotification
from facmon.facility.state import StateStore

log = logging.getLogger(__name__)


@dataclass(eq=False)
class _Run:
    """One channel's share of a `deliver_due`: its due rows, sent in order by one worker thread."""

    channel: str
    rows: list[QueuedNotification]
    sent: int = 0
    error: BaseException | None = None
    abandoned: bool = False  # deliver_due stopped waiting: the worker reports its own failure
    done: threading.Event = field(default_factory=threading.Event)


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
        lease_margin: timedelta = timedelta(minutes=1),
        wait: timedelta = timedelta(seconds=10),
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
        self.lease_margin = lease_margin
        self.wait = wait
        self.batch = batch
        self.jitter = jitter
        # Jitter keeps channels that failed together from being retried in lockstep; seedable for tests.
        self._rng = rng or random.Random()
        self._lock = threading.Lock()  # guards _runs, _closed and each run's error and abandoned
        self._runs: dict[str, _Run] = {}  # channel -> the run its worker is on
        self._closed = False

    def lease(self, channel: str) -> timedelta:
        """How long an attempt through `channel` holds its row: the channel's timeout and the margin.

        The margin covers the commits around the attempt and a channel whose several steps (connect, then the
        answer) each take a good part of its timeout.
        """
        # A hand-written notifier that states no timeout is taken to answer at once.
        timeout = getattr(self._notifiers.get(channel), "timeout", timedelta(0))
        return timeout + self.lease_margin

    def deliver_due(self, now: datetime) -> int:
        """Hand each channel its due notifications, oldest first, up to one batch in all; return how many were
        sent within `wait`.

        A channel still busy with what it was handed before gets nothing new: its rows wait for it, and the
        batch goes to the others.
        """
        with self._lock:
            if self._closed:
                return 0
            busy = set(self._runs)
        shares: dict[str, list[QueuedNotification]] = {}
        for row in self._due(now, busy):
            shares.setdefault(row.channel, []).append(row)
        runs: list[_Run] = []
        with self._lock:
            for channel, rows in shares.items():
                if not self._closed and channel not in self._runs:  # another call may have started it meanwhile
                    self._runs[channel] = run = _Run(channel, rows)
                    runs.append(run)
        for i, run in enumerate(runs):
            worker = threading.Thread(target=self._work, args=(run, now), name=f"facmon-outbox-{run.channel}")
            # A worker stuck on a hanging channel must not keep the process from exiting; its row has a lease.
            worker.daemon = True
            try:
                worker.start()
            except BaseException:
                with self._lock:  # else these channels would stay busy for good
                    for unstarted in runs[i:]:
                        del self._runs[unstarted.channel]
                raise
        deadline = time.monotonic() + self.wait.total_seconds()
        for run in runs:
            run.done.wait(max(0.0, deadline - time.monotonic()))
        with self._lock:
            failed = next((run.error for run in runs if run.error is not None), None)
            for run in runs:
                run.abandoned = not run.done.is_set()
        if failed is not None:
            raise failed  # the state store gave way, or a channel raised what is not an Exception
        return sum(run.sent for run in runs)

    def close(self, timeout: timedelta = timedelta(seconds=10)) -> None:
        """Hand out nothing more, and wait up to `timeout` for the attempts under way.

        An attempt still hanging after that keeps its claim: if its outcome is never written, the row is sent
        again once the lease is over.
        """
        with self._lock:
            self._closed = True
            runs = list(self._runs.values())
        deadline = time.monotonic() + timeout.total_seconds()
        for run in runs:
            run.done.wait(max(0.0, deadline - time.monotonic()))

    def backoff(self, attempts: int) -> timedelta:
        """The wait after the `attempts`-th failed attempt: base * 2**(attempts - 1), capped, +- jitter."""
        seconds = min(self.base_delay.total_seconds() * 2.0 ** min(attempts - 1, 60), self.max_delay.total_seconds())
        return timedelta(seconds=seconds * (1 + self._rng.uniform(-self.jitter, self.jitter)))

    def _due(self, now: datetime, busy: set[str]) -> list[QueuedNotification]:
        """Up to one batch of due rows of channels that are not busy, oldest first: a busy channel's rows are due
        too, and older ones would fill the batch."""
        return self._store.due_notifications(now, self.batch, except_channels=busy)

    def _work(self, run: _Run, now: datetime) -> None:
        try:
            for row in run.rows:
                if self._closed:
                    break
                # Claimed just before its attempt, so the lease covers this attempt and not the ones before it.
                lease_until = max(now, self._clock.now()) + self.lease(row.channel)
                with self._store.begin() as tx:
                    claimed = tx.claim_notification(row.id, now, lease_until)
                if claimed is None:  # taken by another attempt since it was read
                    continue
                if self._attempt(claimed):
                    run.sent += 1
        except BaseException as exc:  # noqa: BLE001 - handed to deliver_due, or reported here
            with self._lock:
                run.error = exc
                report = run.abandoned
            if report:
                log.error(
                    "outbox: delivery through %s stopped, the rest waits for the next round: %s",
                    run.channel,
                    redact(_traceback(exc)),
                )
        finally:
            with self._lock:
                del self._runs[run.channel]
            run.done.set()

    def _attempt(self, row: QueuedNotification) -> bool:
        notifier = self._notifiers.get(row.channel)
        if notifier is None:
            delivery = Delivery(False, retryable=False, detail=f"channel {row.channel!r} is no longer configured")
        else:
            delivery = self._send(notifier, row)
        done_at = self._clock.now()
        # Whatever the notifier says is shown to viewers and logged: no channel's secret gets through here.
        error = None if delivery.ok else redact(delivery.detail or "failed")
        if delivery.ok:
            state, next_at, sent_at = NotificationState.SENT, None, done_at
        elif delivery.retryable and row.attempts < self.max_attempts:
            state, next_at, sent_at = NotificationState.PENDING, done_at + self.backoff(row.attempts), None
        else:
            state, next_at, sent_at = NotificationState.DEAD, None, None
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
        except Exception as exc:  # noqa: BLE001 - a channel that raises is a failed attempt, not a stopped outbox
            # Not log.exception: the traceback's text is redacted like every other line about a channel.
            log.error("channel %s raised on notification %s: %s", row.channel, row.id, redact(_traceback(exc)))
            return Delivery(False, retryable=True, detail=f"{type(exc).__name__}: {exc}")


def _traceback(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)).rstrip()
