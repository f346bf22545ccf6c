"""Runs the rule engine over stored readings, keeps the alarm table in step, and tells listeners."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

from facmon.facility.model import Alarm, AlarmEvent, AlarmState, Reading
from facmon.facility.registry import DeviceRegistry
from facmon.facility.state import StateStore
from facmon.rules.conditions import RuleSet
from facmon.rules.engine import ActiveCondition, ConditionEvent, ConditionKey, EngineState, evaluate
from facmon.rules.lifecycle import on_condition

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AlarmChange:
    """An alarm after a transition, with the audit event that recorded it."""

    alarm: Alarm
    event: AlarmEvent
    new: bool


class AlarmListener(Protocol):
    def on_alarm_change(self, change: AlarmChange) -> None:
        """Called after the change is committed, on the thread that made it."""


class RuleProcessor:
    """Holds the engine state between readings; the state store is the truth it is rebuilt from on start."""

    def __init__(self, rules: RuleSet, registry: DeviceRegistry, store: StateStore) -> None:
        self._rules = rules
        self._registry = registry
        self._store = store
        self._lock = threading.Lock()
        self._state = EngineState()
        self._alarms: dict[ConditionKey, Alarm] = {}
        self.listeners: list[AlarmListener] = []

    def restore(self) -> None:
        """Rebuild from the open alarms, so that a restart neither loses nor re-raises them."""
        with self._lock:
            self._alarms = {(a.rule, a.device_id): a for a in self._store.open_alarms()}
            active = {
                key: ActiveCondition(a.severity, a.raised_at, a.value)
                for key, a in self._alarms.items()
                if a.state in (AlarmState.ACTIVE_UNACKED, AlarmState.ACTIVE_ACKED)
            }
            self._state = EngineState().with_changes(dict(active))

    def on_readings(self, readings: Sequence[Reading], now: datetime) -> None:
        changes: list[AlarmChange] = []
        with self._lock:
            for reading in readings:
                state, events = evaluate(self._rules, self._state, reading, now)
                for event in events:
                    change = self._apply(event)
                    if change is not None:
                        changes.append(change)
                # Only once its alarms are committed: if that fails, the next reading raises them again.
                self._state = state
        for change in changes:
            for listener in self.listeners:
                try:
                    listener.on_alarm_change(change)
                except Exception:
                    log.exception("%s failed on alarm %s", type(listener).__name__, change.alarm.id)

    def _apply(self, event: ConditionEvent) -> AlarmChange | None:
        key = (event.rule, event.device_id)
        device = self._registry.get(event.device_id)
        if device is None:
            return None
        current = self._alarms.get(key)
        result = on_condition(current, event, device)
        if result is None:
            return None
        alarm, audit = result
        new = current is None or current.state is AlarmState.CLEARED
        with self._store.begin() as tx:
            if new:
                alarm = tx.insert_alarm(alarm)
                audit = replace(audit, alarm_id=alarm.id)
            else:
                tx.update_alarm(alarm)
            tx.add_alarm_event(audit)
        if alarm.state is AlarmState.CLEARED:
            self._alarms.pop(key, None)
        else:
            self._alarms[key] = alarm
        log.info("alarm %s %s: %s [%s] %s", alarm.id, audit.kind, alarm.device_id, alarm.severity, alarm.message)
        return AlarmChange(alarm, audit, new)
