"""Runs the rule engine over stored readings and the ticker's time, keeps the alarm table in step, tells listeners."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

from facmon.facility.model import Alarm, AlarmEvent, AlarmState, Reading
from facmon.facility.registry import DeviceRegistry
from facmon.facility.state import StateStore
from facmon.rules.conditions import RuleSet
from facmon.rules.engine import ConditionEvent, ConditionKey, EngineState, Memory, evaluate, tick
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

    @property
    def state(self) -> EngineState:
        return self._state

    def restore(self) -> None:
        """Rebuild from the saved engine memory and the open alarms: a restart neither loses nor re-raises."""
        with self._lock:
            self._alarms = {(a.rule, a.device_id): a for a in self._store.open_alarms()}
            saved = {key: Memory.from_json(data) for key, data in self._store.load_rule_state().items()}
            for key, alarm in self._alarms.items():
                # An alarm raised before the engine kept its memory: its condition is active.
                if key not in saved and alarm.state in (AlarmState.ACTIVE_UNACKED, AlarmState.ACTIVE_ACKED):
                    since = int(alarm.raised_at.timestamp() * 1000)
                    saved[key] = Memory(active=alarm.severity, since_ms=since, message=alarm.message, value=alarm.value)
            with EngineState().memory.mutate() as memory:
                for key, mem in saved.items():
                    memory[key] = mem
                self._state = EngineState(memory.finish())

    def on_readings(self, readings: Sequence[Reading], now: datetime) -> None:
        with self._lock:
            before = self._state
            changes: list[AlarmChange] = []
            for reading in readings:
                state, events = evaluate(self._rules, self._state, reading, now)
                changes += self._apply_all(events)
                # Only once its alarms are committed: if that fails, the next reading raises them again.
                self._state = state
            keys = {(rule.id, r.device_id) for r in readings for rule in self._rules.for_device(r.device_id)}
            self._save(before, keys, now)
        self._tell(changes)

    def tick(self, now: datetime) -> None:
        """Let time pass: delays run out, silent devices raise communication-lost alarms."""
        with self._lock:
            before = self._state
            state, events = tick(self._rules, self._state, now)
            changes = self._apply_all(events)
            self._state = state
            self._save(before, list(state.memory.keys()), now)
        self._tell(changes)

    def _apply_all(self, events: Iterable[ConditionEvent]) -> list[AlarmChange]:
        return [change for event in events if (change := self._apply(event)) is not None]

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

    def _save(self, before: EngineState, keys: Iterable[ConditionKey], now: datetime) -> None:
        """Persist the memory of the (rule, device) pairs that changed: one write per batch, not per reading."""
        rows = []
        for key in keys:
            mem = self._state.memory.get(key)
            if mem is not None and mem is not before.memory.get(key):
                rows.append((key[0], key[1], mem.to_json()))
        if rows:
            with self._store.begin() as tx:
                tx.save_rule_state(rows, now)

    def _tell(self, changes: list[AlarmChange]) -> None:
        for change in changes:
            for listener in self.listeners:
                try:
                    listener.on_alarm_change(change)
                except Exception:
                    log.exception("%s failed on alarm %s", type(listener).__name__, change.alarm.id)
