"""SLA timers: a work order unanswered past its due time, or unresolved past its priority's resolve target, breaches.

A breach is a line in the work order's history, recorded once per work order and kind, so it is counted from there.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from facmon.alerts.work_orders import OPEN_STATUSES
from facmon.facility.clock import Clock
from facmon.facility.config import WorkOrdersConfig
from facmon.facility.durations import format_duration
from facmon.facility.model import WorkOrder, WorkOrderEvent
from facmon.facility.state import StateStore, StateTransaction

log = logging.getLogger(__name__)

RESPONSE_BREACHED = "sla_response_breached"
RESOLVE_BREACHED = "sla_resolve_breached"


@dataclass(frozen=True, slots=True)
class SlaBreaches:
    """How many work orders breached their response and their resolve target in a period."""

    response: int
    resolve: int


# Told of each breach in the transaction that records it: the escalator pages the policy's breach targets.
BreachListener = Callable[[StateTransaction, WorkOrder, WorkOrderEvent], None]


class SlaWatch:
    """Records SLA breaches of unfinished work orders; `check` runs on the service's scheduler."""

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
        candidates = self._store.work_orders_breaching(
            now,
            OPEN_STATUSES,
            self._config.resolve_targets,
            response_kind=RESPONSE_BREACHED,
            resolve_kind=RESOLVE_BREACHED,
        )
        added: list[WorkOrderEvent] = []
        for candidate in candidates:
            with self._store.begin() as tx:
                # Read again under the row lock: someone may have answered it since the query, or another
                # service instance recorded the breach.
                order = tx.get_work_order(candidate.id)
                if order.status in OPEN_STATUSES:
                    added.extend(self._record(tx, order, now))
        for event in added:
            log.warning("work order %s: %s", event.work_order_id, event.note)
        return added

    def _record(self, tx: StateTransaction, order: WorkOrder, now: datetime) -> list[WorkOrderEvent]:
        events = []
        if order.first_response_at is None and order.due_at is not None and order.due_at < now:
            late = format_duration(now - order.due_at)
            note = f"{order.number}: no response by its due time {order.due_at.isoformat()}, {late} late"
            events.append(WorkOrderEvent(order.id, now, RESPONSE_BREACHED, order.status, "system", note))
        target = self._config.resolve_targets.get(order.priority)
        if order.resolved_at is None and target is not None and order.created_at + target < now:
            late = format_duration(now - order.created_at - target)
            note = f"{order.number}: not resolved within {format_duration(target)} ({order.priority}), {late} late"
            events.append(WorkOrderEvent(order.id, now, RESOLVE_BREACHED, order.status, "system", note))
        events = [e for e in events if not tx.has_work_order_event(order.id, e.kind)]
        for event in events:
            tx.add_work_order_event(event)
            if self._on_breach is not None:
                self._on_breach(tx, order, event)
        return events


def sla_breaches(store: StateStore, start: datetime, end: datetime) -> SlaBreaches:
    """The breaches recorded from `start` up to (not including) `end`."""
    counts = store.count_work_order_events((RESPONSE_BREACHED, RESOLVE_BREACHED), start, end)
    return SlaBreaches(response=counts[RESPONSE_BREACHED], resolve=counts[RESOLVE_BREACHED])
