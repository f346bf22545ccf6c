"""Escalation: page the on-call for a work order, step by step, until someone acknowledges.

A work order whose priority has a policy (`oncall.escalate`) gets an escalation row when it opens, and its first
step is paged in the work order's own transaction. `run_due` does the pagings that have come due: the next step
after a step's wait, the policy again from the top up to `repeat` times, a reminder to whoever acknowledged an
urgent work order that is still unresolved. Each paging queues its notifications (one per person and contact)
in the outbox and moves the row on in one transaction, and names the notifications by the paging's number: a
restart, or a second service instance, can neither lose a paging nor page twice.

Paging ends when someone acknowledges (the API, or the signed link in the page), when the work order is taken up
(in progress) or finished, or when the policy has run out.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from zoneinfo import ZoneInfo

from facmon.alerts.errors import AcknowledgeError
from facmon.alerts.messages import page
from facmon.alerts.notifications.notifier import Notifier
from facmon.alerts.paging.ack_links import AckLinks
from facmon.alerts.paging.oncall import Roster
from facmon.alerts.work_orders.lifecycle import OPEN_STATUSES
from facmon.config.oncall import EscalationPolicy, OncallConfig, Target
from facmon.facility.model import (
    Escalation,
    EscalationState,
    WorkOrder,
    WorkOrderEvent,
    WorkOrderStatus,
)
from facmon.facility.state import StateStore, StateTransaction

log = logging.getLogger(__name__)

# Someone is on it: paging stops once the work order is in one of these.
_TAKEN_UP = frozenset(set(WorkOrderStatus) - {WorkOrderStatus.OPEN, WorkOrderStatus.ASSIGNED})
# A run of `run_due` does at most this many pagings; the rest wait for the next run.
_MAX_PER_RUN = 500


class Escalator:
    def __init__(
        self,
        config: OncallConfig,
        store: StateStore,
        tz: ZoneInfo,
        notifiers: Sequence[Notifier],
        *,
        links: AckLinks | None = None,
    ) -> None:
        self._config = config
        self._store = store
        self._tz = tz
        self._notifiers = {n.name: n for n in notifiers}
        self._links = links
        self.roster = Roster(config, tz)

    @property
    def links(self) -> AckLinks | None:
        """What signs and checks the acknowledge links in pages; None when pages carry none."""
        return self._links

    def policy_for(self, order: WorkOrder) -> EscalationPolicy | None:
        policy_id = self._config.escalate.get(order.priority)
        return self._config.policy(policy_id) if policy_id else None

    def start(self, tx: StateTransaction, order: WorkOrder, at: datetime) -> Escalation | None:
        """Begin paging for a new work order, in its transaction: the first step is queued at once."""
        policy = self.policy_for(order)
        if policy is None:
            return None
        escalation = tx.insert_escalation(
            Escalation(0, order.id, policy.id, EscalationState.ACTIVE, -1, 0, 0, at, next_at=at)
        )
        return self._page_next_step(tx, escalation, policy, order, at)

    def run_due(self, now: datetime) -> int:
        """Do the pagings due by `now`; the number done."""
        done = 0
        while done < _MAX_PER_RUN:
            due = self._store.due_escalations(now, limit=50)
            if not due:
                break
            progressed = False
            for candidate in due:
                try:
                    with self._store.begin() as tx:
                        # Again under the row lock: someone may have acknowledged, or another instance paged.
                        escalation = tx.get_escalation(candidate.id)
                        if escalation != candidate:
                            continue
                        self._advance(tx, escalation, now)
                except _Moved:
                    continue
                progressed = True
                done += 1
            if not progressed:
                break
        return done

    def acknowledge(self, work_order_id: int, *, by: str, at: datetime, via: str = "api") -> Escalation:
        """Stop paging for a work order: `by` is on it. Acknowledging again changes nothing."""
        escalation = self._store.escalation_of(work_order_id)
        if escalation is None:
            raise AcknowledgeError(f"work order {work_order_id} pages nobody: nothing to acknowledge")
        return self.acknowledge_escalation(escalation.id, by=by, at=at, via=via)

    def acknowledge_escalation(self, escalation_id: int, *, by: str, at: datetime, via: str) -> Escalation:
        """Acknowledge by the escalation's id (the one-click link carries it)."""
        with self._store.begin() as tx:
            escalation = tx.get_escalation(escalation_id)
            if escalation.state is EscalationState.ACKNOWLEDGED:
                return escalation
            if escalation.state is EscalationState.ENDED:
                raise AcknowledgeError(
                    f"paging for work order {escalation.work_order_id} is over ({escalation.end_reason})"
                )
            order = tx.get_work_order(escalation.work_order_id)
            policy = self._config.policy(escalation.policy)
            renotify = policy.renotify_unresolved.get(order.priority) if policy else None
            after = replace(
                escalation,
                state=EscalationState.ACKNOWLEDGED,
                acked_at=at,
                acked_by=by,
                next_at=at + renotify if renotify else None,
            )
            if not tx.update_escalation(escalation, after):
                raise AcknowledgeError(f"work order {order.number}: paging moved on meanwhile, try again")
            tx.add_work_order_event(WorkOrderEvent(order.id, at, "acknowledged", order.status, by, f"via {via}"))
        log.info("work order %s acknowledged by %s via %s", order.number, by, via)
        return after

    def on_breach(self, tx: StateTransaction, order: WorkOrder, event: WorkOrderEvent) -> None:
        """An SLA breach is news for the policy's breach targets (by default its last step): page them."""
        policy = self.policy_for(order)
        if policy is None:
            return
        people = self._reach(policy.breach_targets(), event.at)
        self._queue_pages(tx, order, None, people, event.kind, "breach", event.at)

    def escalation(self, work_order_id: int) -> Escalation | None:
        return self._store.escalation_of(work_order_id)

    # -- inside

    def _advance(self, tx: StateTransaction, escalation: Escalation, now: datetime) -> Escalation:
        order = tx.get_work_order(escalation.work_order_id)
        policy = self._config.policy(escalation.policy)
        if policy is None:
            return self._end(tx, escalation, order, now, f"policy {escalation.policy} is no longer configured")
        if escalation.state is EscalationState.ACKNOWLEDGED:
            # Reminders go on while the work order is unresolved, in progress or not.
            return self._remind(tx, escalation, policy, order, now)
        if order.status in _TAKEN_UP:
            return self._end(tx, escalation, order, now, f"work order {order.status}")
        return self._page_next_step(tx, escalation, policy, order, now)

    def _page_next_step(
        self, tx: StateTransaction, escalation: Escalation, policy: EscalationPolicy, order: WorkOrder, now: datetime
    ) -> Escalation:
        step, round_ = escalation.step + 1, escalation.round
        if step >= len(policy.steps):
            if round_ >= policy.repeat:
                return self._end(tx, escalation, order, now, "exhausted: nobody acknowledged")
            step, round_ = 0, round_ + 1
        paging = escalation.pages + 1
        people = self._reach(policy.steps[step].notify, now)
        queued = self._queue_pages(tx, order, escalation, people, str(paging), "page", now)
        # A step that reaches nobody (no one on call, no contact) is not waited on.
        wait = policy.steps[step].wait if queued else None
        after = replace(escalation, step=step, round=round_, pages=paging, next_at=now + wait if wait else now)
        if not tx.update_escalation(escalation, after):
            raise _Moved
        what = ", ".join(people) if people else "nobody"
        note = f"step {step + 1} of {policy.id}" + (f" (round {round_ + 1})" if round_ else "") + f": paged {what}"
        tx.add_work_order_event(
            WorkOrderEvent(order.id, now, "paged" if queued else "page_missed", order.status, "system", note)
        )
        log.info("work order %s: %s", order.number, note)
        return after

    def _remind(
        self, tx: StateTransaction, escalation: Escalation, policy: EscalationPolicy, order: WorkOrder, now: datetime
    ) -> Escalation:
        renotify = policy.renotify_unresolved.get(order.priority)
        if order.status not in OPEN_STATUSES or renotify is None:
            return self._end(tx, escalation, order, now, f"work order {order.status}")
        by = escalation.acked_by
        people = [by] if by and self._config.person(by) else self._reach(policy.steps[0].notify, now)
        paging = escalation.pages + 1
        self._queue_pages(tx, order, escalation, people, str(paging), "reminder", now)
        after = replace(escalation, pages=paging, next_at=now + renotify)
        if not tx.update_escalation(escalation, after):
            raise _Moved
        note = f"acknowledged but unresolved: reminded {', '.join(people) or 'nobody'}"
        tx.add_work_order_event(WorkOrderEvent(order.id, now, "reminded", order.status, "system", note))
        return after

    def _end(
        self, tx: StateTransaction, escalation: Escalation, order: WorkOrder, now: datetime, reason: str
    ) -> Escalation:
        after = replace(escalation, state=EscalationState.ENDED, next_at=None, ended_at=now, end_reason=reason)
        if not tx.update_escalation(escalation, after):
            raise _Moved
        if reason.startswith("exhausted"):
            tx.add_work_order_event(
                WorkOrderEvent(order.id, now, "escalation_exhausted", order.status, "system", reason)
            )
            log.warning("work order %s: paging %s", order.number, reason)
        return after

    def _reach(self, targets: Sequence[Target], at: datetime) -> list[str]:
        people: list[str] = []
        for target in targets:
            for person in self.roster.reach(target, at):
                if person not in people:
                    people.append(person)
        return people

    def _queue_pages(
        self,
        tx: StateTransaction,
        order: WorkOrder,
        escalation: Escalation | None,
        people: Sequence[str],
        paging: str,
        reason: str,
        at: datetime,
    ) -> int:
        """Queue a page to each person on each of their channels; how many were queued."""
        queued = 0
        for person_id in people:
            person = self._config.person(person_id)
            if person is None:
                continue
            link = self._links.url(escalation.id, person_id) if self._links and escalation else None
            for channel, address in person.contacts.items():
                notifier = self._notifiers.get(channel)
                if notifier is None:
                    continue
                language = person.language or notifier.language
                message = page(order, language, self._tz, reason=reason, ack_url=link)
                new = tx.queue_notification(
                    channel=channel,
                    kind=reason,
                    ref=f"{order.number}/{paging}/{person_id}",
                    language=language,
                    subject=message.subject,
                    body=message.body,
                    at=at,
                    recipient=person_id,
                    address=address or None,
                )
                queued += 1
                if new is None:
                    log.warning("page %s/%s/%s through %s was queued before", order.number, paging, person_id, channel)
        return queued


class _Moved(Exception):  # noqa: N818 - internal signal: the row changed under us, roll back this paging
    pass
