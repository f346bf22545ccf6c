"""SLA timers: a work order unanswered past its due time, or unresolved past its priority's resolve target, breaches.

A breach is a line in the work order's history, recorded once per work order and kind, so it is counted from there.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from facmon.alerts.work_orders.lifecycle import OPEN_STATUSES
from facmon.config.durations import format_duration
from facmon.config.work_orders import WorkOrdersConfig
from facmon.facility.clock import Clock
from facmon.facility.model import WorkOrder, WorkOrderEvent
from facmon.facility.state import StateStore, StateTransaction

log = logging.getLogger(__name__)

ACKNOWLEDGE_BREACHED = "sla_ack_breached"
RESPONSE_BREACHED = "sla_response_breached"
RESOLVE_BREACHED = "sla_resolve_breached"
BREACHES = (ACKNOWLEDGE_BREACHED, RESPONSE_BREACHED, RESOLVE_BREACHED)
# What counts as an acknowledgement: of the page, or someone taking the work order up.
ACKNOWLEDGED = "acknowledged"


@dataclass(frozen=True, slots=True)
class SlaBreaches:
    """How many work orders breached their response and their resolve target in a period (and acknowledge)."""

    response: int
    resolve: int
    acknowledge: int = 0


# Told of each breach in the transaction that records it: the escalator pages the policy's breach targets.
BreachListener = Callable[[StateTransaction, WorkOrder, WorkOrderEvent], None]


class SlaWatch:
    """Records SLA breaches of unfinished work orders; `check` runs on the service's scheduler.

    The targets of each work order are its category's and priority's (`WorkOrdersConfig.targets`): acknowledge
    (of the page, or taking it up), respond (by `due_at`, fixed when it opened) and resolve.
    """

    def __init__(
        self, store: StateStore, config: WorkOrdersConfig, clock: Clock, on_breach: BreachListener | None = None
    ) -> None:
        self._store = store
        self._config = config
        self._on_breach = on_breach
        # Kept for callers that check without a tick's time; `check` itself uses the `now` it is given.
        self._clock = clock

    def check(self, now: datetime | None = None) -> list[WorkOrderEvent]:
        """Record the breaches that have happened by `now` and are not yet recorded; the events added."""
        now = now or self._clock.now()
        orders = self._store.list_work_orders(statuses=OPEN_STATUSES, limit=100_000).items
        marks = self._store.work_order_marks([o.id for o in orders], (*BREACHES, ACKNOWLEDGED))
        added: list[WorkOrderEvent] = []
        for candidate in orders:
            if not self._due(candidate, marks.get(candidate.id, set()), now):
                continue
            with self._store.begin() as tx:
                # Read again under the row lock: someone may have answered it since the query, or another
                # service instance recorded the breach.
                order = tx.get_work_order(candidate.id)
                if order.status in OPEN_STATUSES:
                    added.extend(self._record(tx, order, now))
        for event in added:
            log.warning("work order %s: %s", event.work_order_id, event.note)
        return added

    def _breaches(self, order: WorkOrder, marks: set[str], now: datetime) -> list[tuple[str, str]]:
        """The breaches of `order` by `now` not yet in `marks` (the kinds in its history): kind and note."""
        targets = self._config.targets(order.category, order.priority)
        found = []
        answered = order.first_response_at is not None
        if targets.acknowledge is not None and not answered and not marks & {ACKNOWLEDGED, ACKNOWLEDGE_BREACHED}:
            late = now - order.created_at - targets.acknowledge
            if late > timedelta(0):
                within, by = format_duration(targets.acknowledge), format_duration(late)
                found.append((ACKNOWLEDGE_BREACHED, f"{order.number}: not acknowledged within {within}, {by} late"))
        due = order.due_at
        if not answered and due is not None and due < now and RESPONSE_BREACHED not in marks:
            late_text = format_duration(now - due)
            found.append(
                (RESPONSE_BREACHED, f"{order.number}: no response by its due time {due.isoformat()}, {late_text} late")
            )
        resolve = targets.resolve
        if (
            resolve is not None
            and order.resolved_at is None
            and order.created_at + resolve < now
            and RESOLVE_BREACHED not in marks
        ):
            late_text, within = format_duration(now - order.created_at - resolve), format_duration(resolve)
            note = f"{order.number}: not resolved within {within} ({order.priority}), {late_text} late"
            found.append((RESOLVE_BREACHED, note))
        return found

    def _due(self, order: WorkOrder, marks: set[str], now: datetime) -> bool:
        return bool(self._breaches(order, marks, now))

    def _record(self, tx: StateTransaction, order: WorkOrder, now: datetime) -> list[WorkOrderEvent]:
        marks = {kind for kind in (*BREACHES, ACKNOWLEDGED) if tx.has_work_order_event(order.id, kind)}
        events = [
            WorkOrderEvent(order.id, now, kind, order.status, "system", note)
            for kind, note in self._breaches(order, marks, now)
        ]
        for event in events:
            tx.add_work_order_event(event)
            if self._on_breach is not None:
                self._on_breach(tx, order, event)
        return events


def sla_breaches(store: StateStore, start: datetime, end: datetime) -> SlaBreaches:
    """The breaches recorded from `start` up to (not including) `end`."""
    counts = store.count_work_order_events(BREACHES, start, end)
    return SlaBreaches(
        response=counts[RESPONSE_BREACHED], resolve=counts[RESOLVE_BREACHED], acknowledge=counts[ACKNOWLEDGE_BREACHED]
    )
