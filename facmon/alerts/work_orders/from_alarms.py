"""Where an alarm opens a work order: the `auto_open` policy, and the notes an alarm's return and clearing add."""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from facmon.alerts.notifications.notifier import Notifier
from facmon.alerts.paging.escalation import Escalator
from facmon.alerts.work_orders.lifecycle import OPEN_STATUSES
from facmon.alerts.work_orders.records import announce_work_order, open_work_order
from facmon.config.registry import DeviceRegistry
from facmon.config.work_orders import AutoOpen, WorkOrdersConfig
from facmon.facility.model import (
    CATEGORY_OF_DEVICE_TYPE,
    Alarm,
    AlarmState,
    Device,
    WorkOrderEvent,
    WorkOrderSource,
)
from facmon.facility.state import StateStore, StateTransaction
from facmon.rules.processor import AlarmChange

log = logging.getLogger(__name__)

# How long a committed alarm change is left to the live path before the catch-up follows it up.
FOLLOW_UP_GRACE = timedelta(seconds=10)


class WorkOrderPolicy:
    """Opens a work order for each new alarm that the policy covers, and notes on it when the alarm clears.

    The notifiers are only read for their names and languages: the message to each channel is queued in the
    work order's transaction, and the outbox (facmon.alerts.notifications.outbox) delivers it.
    """

    def __init__(
        self,
        config: WorkOrdersConfig,
        registry: DeviceRegistry,
        store: StateStore,
        tz: ZoneInfo,
        notifiers: list[Notifier],
        escalator: Escalator | None = None,
    ) -> None:
        self._config = config
        self._registry = registry
        self._store = store
        self._tz = tz
        self._notifiers = notifiers
        self._escalator = escalator

    def on_alarm_change(self, change: AlarmChange) -> None:
        """Follow the change up in one transaction with marking it followed up; once, however often it is told."""
        with self._store.begin() as tx:
            if change.event.id is not None and not tx.take_followup(change.event.id):
                return  # followed up already: by the catch-up after a restart, or by another worker
            self._follow_up(tx, change)

    def catch_up(
        self, now: datetime, *, min_age: timedelta = FOLLOW_UP_GRACE, sites: Collection[str] | None = None
    ) -> int:
        """Follow up the alarm changes left without their work orders (a crash, a state-store outage).

        Changes younger than `min_age` are left to the live path, which follows them up in order; the catch-up
        runs at start with no age and then on the paging schedule (in a cluster, also with no age for the
        `sites` of a partition taken over, before its readings). Returns how many were followed up.
        """
        done = 0
        for event, alarm in self._store.pending_followups(now - min_age, sites=sites):
            # The alarm as the change left it: the work order is for the fault that was raised, even if it
            # has cleared since.
            at_change = replace(alarm, state=event.state, severity=event.severity)
            new = event.kind in ("raised", "raised_suppressed")
            log.info("following up alarm %s %s of %s, left unfinished", alarm.id, event.kind, event.at.isoformat())
            self.on_alarm_change(AlarmChange(at_change, event, new))
            done += 1
        return done

    def _follow_up(self, tx: StateTransaction, change: AlarmChange) -> None:
        alarm = change.alarm
        device = self._registry.get(alarm.device_id)
        if device is None:
            return
        kind = change.event.kind
        if change.new or kind in ("unsuppressed", "in_service"):
            # A suppressed alarm (by design, or its device in maintenance) sends nobody out; once it is
            # visible again while still active, it does, unless it already has its work order.
            if alarm.suppressed or alarm.state not in (AlarmState.ACTIVE_UNACKED, AlarmState.ACTIVE_ACKED):
                return
            rule = self.match(alarm, device)
            if rule is not None and (change.new or not tx.work_orders_of_alarm(alarm.id)):
                # Due from when someone could first know of it, not from when it was raised unseen.
                self._open_for(tx, alarm, device, rule, change.event.at)
        elif kind == "severity_changed" and not alarm.suppressed:
            rule = self.match(alarm, device)
            if rule is not None:
                self._raise_priority(tx, alarm, rule, change.event.at)
        elif kind == "returned" or alarm.state is AlarmState.CLEARED:
            self._note_alarm_cleared(tx, alarm, change.event.at)

    def _raise_priority(self, tx: StateTransaction, alarm: Alarm, rule: AutoOpen, at: datetime) -> None:
        """An alarm that worsens makes its work order more urgent (never less): the priority its new severity
        opens with, due no later than that priority's target from now, paged if it was not."""
        for order in tx.work_orders_of_alarm(alarm.id, OPEN_STATUSES):
            if rule.priority >= order.priority:  # "P1" < "P2": already as urgent
                continue
            respond = self._config.targets(order.category, rule.priority).respond
            due = at + respond if respond is not None else order.due_at
            if order.due_at is not None and due is not None:
                due = min(due, order.due_at)
            raised = replace(order, priority=rule.priority, due_at=due, updated_at=at)
            tx.update_work_order(raised)
            note = f"{order.priority} → {rule.priority}: alarm {alarm.id} is now {alarm.severity}"
            tx.add_work_order_event(WorkOrderEvent(order.id, at, "priority_raised", order.status, "system", note))
            if self._escalator is not None and tx.escalation_of(order.id) is None:
                self._escalator.start(tx, raised, at)
            log.info("work order %s: %s", order.number, note)

    def match(self, alarm: Alarm, device: Device) -> AutoOpen | None:
        """The first auto-open entry that covers this alarm."""
        for entry in self._config.auto_open:
            if alarm.severity in entry.severities and (not entry.device_types or device.type in entry.device_types):
                return entry
        return None

    def _open_for(self, tx: StateTransaction, alarm: Alarm, device: Device, rule: AutoOpen, at: datetime) -> None:
        window = self._config.attach_within
        earlier = (
            tx.unfinished_work_order_of_rule(device.id, alarm.rule, at - window, OPEN_STATUSES) if window else None
        )
        if earlier is not None:
            # The same fault again, while someone is on it: one job, with the recurrence on its record.
            note = f"alarm {alarm.id} raised again ({alarm.rule}, {alarm.severity}): {alarm.message}"
            tx.add_work_order_event(
                WorkOrderEvent(earlier.id, at, "alarm_raised_again", earlier.status, "system", note)
            )
            log.info("alarm %s joins work order %s", alarm.id, earlier.number)
            return
        order = open_work_order(
            tx,
            title=f"{device.name}: {alarm.message}",
            category=CATEGORY_OF_DEVICE_TYPE[device.type],
            priority=rule.priority,
            source=WorkOrderSource.ALARM,
            at=at,
            tz=self._tz,
            response_target=self._config.targets(CATEGORY_OF_DEVICE_TYPE[device.type], rule.priority).respond,
            device=device,
            alarm_id=alarm.id,
            description=f"Opened by alarm {alarm.id} ({alarm.rule}, {alarm.severity}).",
            team=rule.team,
        )
        announce_work_order(tx, order, self._notifiers, self._tz, self._escalator)
        log.info("work order %s opened for alarm %s (%s)", order.number, alarm.id, order.priority)

    def _note_alarm_cleared(self, tx: StateTransaction, alarm: Alarm, at: datetime) -> None:
        # Clearing does not close the work order: someone still has to verify on site.
        for order in tx.work_orders_of_alarm(alarm.id, OPEN_STATUSES):
            tx.add_work_order_event(
                WorkOrderEvent(order.id, at, "alarm_cleared", order.status, "system", f"alarm {alarm.id} cleared")
            )
