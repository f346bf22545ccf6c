"""Runs the rule engine over stored readings and the ticker's time, keeps the alarm table in step, tells listeners."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

from facmon.config.registry import DeviceRegistry
from facmon.facility.clock import epoch_ms
from facmon.facility.errors import FencedError, StateStoreError
from facmon.facility.model import Alarm, AlarmEvent, AlarmState, Reading, ServiceRecord
from facmon.facility.state import StateStore
from facmon.ingest.errors import SinkBehindError
from facmon.rules.alarm_lifecycle import (
    acknowledge,
    comment,
    on_condition,
    reset,
    retire,
    set_service,
    shelve,
    unshelve,
)
from facmon.rules.conditions import RuleSet
from facmon.rules.engine import (
    ConditionChange,
    ConditionEvent,
    ConditionKey,
    EngineState,
    Memory,
    evaluate,
    resume,
    tick,
)
from facmon.rules.errors import LifecycleError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AlarmChange:
    """An alarm after a transition, with the audit event that recorded it."""

    alarm: Alarm
    event: AlarmEvent
    new: bool


def _condition_moved(old: Memory | None, new: Memory | None) -> bool:
    """Whether a condition began, ended, or started or stopped a delay: never left unsaved, unlike history."""
    if old is None or new is None:
        return True
    return (
        old.active is not new.active
        or old.pending is not new.pending
        or old.pending_since_ms != new.pending_since_ms
        or old.clearing_since_ms != new.clearing_since_ms
        or old.suppressed is not new.suppressed
    )


# An operator's or the system's action on an alarm: its next state and the audit event of the change.
Action = Callable[[Alarm], tuple[Alarm, AlarmEvent]]


@dataclass(frozen=True, slots=True)
class StoredAlarms:
    """The open alarms and the service records as stored, read once for the ticks of several processors."""

    open_alarms: list[Alarm]
    out_of_service: dict[str, ServiceRecord]

    @classmethod
    def read(cls, store: StateStore) -> StoredAlarms:
        return cls(store.open_alarms(), store.out_of_service())


class AlarmListener(Protocol):
    def on_alarm_change(self, change: AlarmChange) -> None:
        """Called after the change is committed, on the thread that made it."""


class RuleProcessor:
    """Holds the engine state between readings; the state store is the truth it is rebuilt from on start."""

    def __init__(
        self,
        rules: RuleSet,
        registry: DeviceRegistry,
        store: StateStore,
        *,
        save_every: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
        shared: bool = False,
    ) -> None:
        self._rules = rules
        self._registry = registry
        self._store = store
        # In a cluster, other workers' processors and APIs change alarms and service records in the store too:
        # this one then holds only its registry's devices, and reads the store where its memory may be behind.
        self._shared = shared
        self._lock = threading.Lock()
        self._state = EngineState()
        self._alarms: dict[ConditionKey, Alarm] = {}
        self._out_of_service: dict[str, ServiceRecord] = {}
        # Memory changed by readings since it was last saved. Saved at once when an alarm or a condition or its
        # delay changes, so a restart finds every alarm and timer; history windows and latest values alone at
        # most every `save_every` s: serialising windows per batch would cost ingest more than the readings.
        self._dirty: set[ConditionKey] = set()
        self._save_every = save_every
        self._monotonic = monotonic
        self._saved_at = monotonic()
        self._unsaved = False
        self.failed_readings = 0
        self.listeners: list[AlarmListener] = []

    @property
    def state(self) -> EngineState:
        return self._state

    @property
    def rules(self) -> RuleSet:
        return self._rules

    def _mine(self, device_id: str) -> bool:
        return not self._shared or self._registry.get(device_id) is not None

    def restore(self, now: datetime | None = None) -> None:
        """Rebuild from the saved engine memory and the open alarms: a restart neither loses nor re-raises.

        With `now`, devices' silence is counted from now: facmon was not listening while it was down.
        """
        with self._lock:
            self._sync_service()
            self._alarms = {(a.rule, a.device_id): a for a in self._store.open_alarms() if self._mine(a.device_id)}
            saved = {
                key: Memory.from_json(data) for key, data in self._store.load_rule_state().items() if self._mine(key[1])
            }
            for key, alarm in self._alarms.items():
                # An alarm raised before the engine kept its memory: its condition is active.
                if key not in saved and alarm.state in (AlarmState.ACTIVE_UNACKED, AlarmState.ACTIVE_ACKED):
                    since = epoch_ms(alarm.raised_at)
                    saved[key] = Memory(active=alarm.severity, since_ms=since, message=alarm.message, value=alarm.value)
            with EngineState().memory.mutate() as memory:
                for key, mem in saved.items():
                    memory[key] = mem
                self._state = EngineState(memory.finish())
            if now is not None:
                self._state = resume(self._state, now)

    def on_readings(self, readings: Sequence[Reading], now: datetime) -> None:
        """Judge readings in order; each reading's alarm changes are committed in one transaction.

        When the state store fails, raise SinkBehindError with how many readings were judged and committed: the
        ingest pipeline hands the rest over again and acknowledges nothing meanwhile, so no alarm is lost. A
        reading that trips a fault of the engine itself is logged, counted and passed over: it must not stop
        the readings behind it.
        """
        changes: list[AlarmChange] = []
        done = 0
        try:
            with self._lock:
                if self._unsaved:
                    self._save_dirty(now)
                before = self._state
                now_ms = epoch_ms(now)
                for reading in readings:
                    try:
                        state, events = evaluate(self._rules, self._state, reading, now, now_ms)
                        if events:
                            changes += self._apply(events)
                    except StateStoreError:
                        raise
                    except Exception:
                        self.failed_readings += 1
                        log.exception("rules: failed on a reading of %s at %s; passed over", reading.device_id, now)
                    else:
                        # Only once its alarms are committed: if that fails, the reading is judged again.
                        self._state = state
                    done += 1
                memory, old = self._state.memory, before.memory
                urgent = bool(changes)
                for device_id in {r.device_id for r in readings}:
                    for rule in self._rules.for_device(device_id):
                        key = (rule.id, device_id)
                        mem = memory.get(key)
                        if mem is not (was := old.get(key)):
                            self._dirty.add(key)
                            urgent = urgent or _condition_moved(was, mem)
                if urgent or self._monotonic() - self._saved_at >= self._save_every:
                    self._save_dirty(now)
        except FencedError:
            raise  # this worker no longer holds the readings' partition: not a store that will come back
        except StateStoreError as exc:
            raise SinkBehindError(done, f"rules: {exc}") from None
        finally:
            # What was committed is told even when the store fails halfway: each alarm gets its work order.
            self._tell(changes)

    def tick(self, now: datetime, stored: StoredAlarms | None = None) -> None:
        """Let time pass: delays run out, silent devices raise communication-lost alarms, shelves expire.

        A shared processor reads the open alarms and the service records as stored, or takes them from `stored`
        (read once for several processors).
        """
        changes: list[AlarmChange] = []
        try:
            with self._lock:
                before = self._state
                state, events = tick(self._rules, self._state, now)
                if events:
                    changes += self._apply(events)
                self._state = state
                self._dirty.update(key for key, mem in state.memory.items() if mem is not before.memory.get(key))
                self._save_dirty(now)
                if self._shared:
                    self._sync_service(None if stored is None else stored.out_of_service)
                for alarm in self._open_alarms(None if stored is None else stored.open_alarms):
                    if alarm.shelved and alarm.shelved_until is not None and alarm.shelved_until <= now:
                        changes += self._change(alarm.id, lambda a: unshelve(a, "system", now, "shelf time is up"))
                for record in list(self._out_of_service.values()):
                    if record.until is not None and record.until <= now:
                        changes += self._set_service(record.device_id, True, "system", now, "maintenance window over")
        finally:
            self._tell(changes)

    def sync(self) -> None:
        """Read the service records again: another worker's API may have changed them (a shared processor)."""
        with self._lock:
            self._sync_service()

    def _sync_service(self, records: dict[str, ServiceRecord] | None = None) -> None:
        stored = self._store.out_of_service() if records is None else records
        self._out_of_service = {d: r for d, r in stored.items() if self._mine(d)}

    def _open_alarms(self, stored: Sequence[Alarm] | None = None) -> list[Alarm]:
        """The open alarms as held; as stored when shared, where operators on other workers act on them too."""
        if not self._shared:
            return list(self._alarms.values())
        alarms = self._store.open_alarms() if stored is None else stored
        return [a for a in alarms if self._mine(a.device_id)]

    def is_out_of_service(self, device_id: str) -> bool:
        return device_id in self._out_of_service

    def take_out_of_service(
        self, device_id: str, actor: str, now: datetime, reason: str, until: datetime | None = None
    ) -> None:
        """Maintenance: the device's alarms are still recorded, but not annunciated, until it returns to service."""
        with self._lock:
            record = ServiceRecord(device_id, now, actor, reason, until)
            with self._store.begin() as tx:
                tx.take_out_of_service(record)
            self._out_of_service[device_id] = record
            changes = self._set_service(device_id, False, actor, now, reason)
        self._tell(changes)

    def return_to_service(self, device_id: str, actor: str, now: datetime, note: str | None = None) -> None:
        with self._lock:
            if self._shared:
                self._sync_service()
            if device_id not in self._out_of_service:
                raise LifecycleError(f"device {device_id} is not out of service")
            changes = self._set_service(device_id, True, actor, now, note)
        self._tell(changes)

    def _set_service(
        self, device_id: str, in_service: bool, actor: str, now: datetime, note: str | None
    ) -> list[AlarmChange]:
        if in_service:
            with self._store.begin() as tx:
                tx.return_to_service(device_id)
            self._out_of_service.pop(device_id, None)
        changes = []
        saved = self._store.load_rule_state() if self._shared else {}
        for alarm in self._open_alarms():
            if alarm.device_id != device_id:
                continue
            key = (alarm.rule, alarm.device_id)
            memory = Memory.from_json(saved[key]) if key in saved else self._state.memory.get(key)
            designed = memory is not None and memory.suppressed
            if in_service and alarm.suppressed and not designed:
                changes += self._change(alarm.id, lambda a: set_service(a, True, actor, now, note))
            elif not in_service and not alarm.suppressed:
                changes += self._change(alarm.id, lambda a: set_service(a, False, actor, now, note))
        return changes

    def replace_rules(self, rules: RuleSet, now: datetime) -> None:
        """Put new rules in force; what the engine remembers of rules that stay is kept.

        Alarms of rules that are gone (removed or disabled) are retired: no condition could ever clear them.
        """
        with self._lock:
            self._rules = rules
            # By (rule, device): a rule that stays but no longer selects a device is gone for that device.
            in_force = {(rule.id, rule.device.id) for rule in rules.all()}
            changes = [
                change
                for key, alarm in list(self._alarms.items())
                if key not in in_force
                for change in self._change(
                    alarm.id, lambda a: retire(a, "system", now, f"rule {a.rule} no longer applies to {a.device_id}")
                )
            ]
            with self._state.memory.mutate() as memory:
                for key in [key for key in self._state.memory if key not in in_force]:
                    del memory[key]
                remembered = memory.finish()
            self._state = EngineState(remembered)
        self._tell(changes)

    # -- operator actions: each recorded with who, when and why ----------------------------------------------

    def acknowledge(self, alarm_ids: Sequence[int], actor: str, now: datetime, note: str | None = None) -> list[Alarm]:
        """Acknowledge one or many; all or none (an alarm that cannot be acknowledged refuses the lot)."""
        with self._lock:
            changes = self._commit_all([(i, lambda a: acknowledge(a, actor, now, note)) for i in alarm_ids])
        self._tell(changes)
        return [change.alarm for change in changes]

    def shelve(self, alarm_id: int, actor: str, now: datetime, until: datetime, reason: str) -> Alarm:
        return self._operate(alarm_id, lambda alarm: shelve(alarm, actor, now, until, reason))

    def unshelve(self, alarm_id: int, actor: str, now: datetime, note: str | None = None) -> Alarm:
        return self._operate(alarm_id, lambda alarm: unshelve(alarm, actor, now, note))

    def reset(self, alarm_id: int, actor: str, now: datetime, note: str | None = None) -> Alarm:
        return self._operate(alarm_id, lambda alarm: reset(alarm, actor, now, note))

    def comment(self, alarm_id: int, actor: str, now: datetime, text: str) -> Alarm:
        return self._operate(alarm_id, lambda alarm: comment(alarm, actor, now, text))

    def _operate(self, alarm_id: int, action: Action) -> Alarm:
        with self._lock:
            [change] = self._commit_all([(alarm_id, action)])
        self._tell([change])
        return change.alarm

    def _change(self, alarm_id: int, action: Action) -> list[AlarmChange]:
        """A change the system makes (shelf time up, maintenance, a rule gone): none when the alarm as stored no
        longer allows it, changed meanwhile by an operator on another worker."""
        try:
            return self._commit_all([(alarm_id, action)])
        except LifecycleError as exc:
            log.info("alarm %s changed meanwhile: %s", alarm_id, exc)
            return []

    def _commit_all(self, actions: Sequence[tuple[int, Action]]) -> list[AlarmChange]:
        """Apply operator or system actions to alarms as stored, their rows locked, in one transaction; then hold
        them. All or none: an action that the alarm refuses (LifecycleError) or a missing alarm refuses the lot.

        As stored, not as held: in a cluster, an operator acts through any worker's API, and the leader's memory
        of an alarm may be older than its row."""
        with self._store.begin() as tx:
            results = []
            for alarm_id, action in actions:
                alarm, audit = action(tx.get_alarm(alarm_id, lock=True))
                results.append((alarm, tx.add_alarm_event(audit, follow_up=True)))
                tx.update_alarm(alarm)
        changes = []
        for alarm, audit in results:
            key = (alarm.rule, alarm.device_id)
            if alarm.state is AlarmState.CLEARED:
                self._alarms.pop(key, None)
            elif self._alarms.get(key, alarm).id == alarm.id:
                self._alarms[key] = alarm
            log.info("alarm %s %s by %s", alarm.id, audit.kind, audit.actor)
            changes.append(AlarmChange(alarm, audit, False))
        return changes

    def _apply(self, events: Sequence[ConditionEvent]) -> list[AlarmChange]:
        """Commit the alarm changes of one reading's (or one tick's) events in one transaction, then hold them."""
        held: dict[ConditionKey, Alarm | None] = {}
        results: list[tuple[Alarm, AlarmEvent, bool]] = []
        with self._store.begin() as tx:
            for event in events:
                key = (event.rule, event.device_id)
                device = self._registry.get(event.device_id)
                if device is None:
                    continue
                if key in held:
                    current = held[key]
                elif (known := self._alarms.get(key)) is not None:
                    # As stored: an operator may have acted on it through another worker since.
                    current = tx.get_alarm(known.id, lock=True)
                else:
                    current = None
                if event.device_id in self._out_of_service:
                    if event.kind is ConditionChange.UNSUPPRESSED:
                        continue  # its design no longer suppresses it, but maintenance still does
                    event = replace(event, suppressed=True)
                result = on_condition(current, event, device)
                if result is None:
                    continue
                alarm, audit = result
                new = current is None or current.state is AlarmState.CLEARED
                if new:
                    alarm = tx.insert_alarm(alarm)
                    audit = replace(audit, alarm_id=alarm.id)
                else:
                    tx.update_alarm(alarm)
                audit = tx.add_alarm_event(audit, follow_up=True)
                held[key] = alarm
                results.append((alarm, audit, new))
        changes = []
        for alarm, audit, new in results:
            key = (alarm.rule, alarm.device_id)
            if alarm.state is AlarmState.CLEARED:
                self._alarms.pop(key, None)
            else:
                self._alarms[key] = alarm
            log.info("alarm %s %s: %s [%s] %s", alarm.id, audit.kind, alarm.device_id, alarm.severity, alarm.message)
            changes.append(AlarmChange(alarm, audit, new))
        return changes

    def flush(self, now: datetime) -> None:
        """Save the rule memory not saved yet; called on an orderly stop."""
        with self._lock:
            self._save_dirty(now)

    def _save_dirty(self, now: datetime) -> None:
        """Persist the memory of the (rule, device) pairs that changed since the last save, in one write."""
        memory = self._state.memory
        rows = [(key[0], key[1], mem.to_json()) for key in self._dirty if (mem := memory.get(key)) is not None]
        if rows:
            # Until it succeeds, the next batch saves first: an alarm's timer is never left unsaved under an ack.
            self._unsaved = True
            with self._store.begin() as tx:
                tx.save_rule_state(rows, now)
        self._unsaved = False
        self._dirty.clear()
        self._saved_at = self._monotonic()

    def _tell(self, changes: list[AlarmChange]) -> None:
        for change in changes:
            for listener in self.listeners:
                try:
                    listener.on_alarm_change(change)
                except FencedError as exc:
                    # The lease went to another worker since the change was committed: the new holder's
                    # catch-up follows the change up.
                    log.warning("%s: alarm %s: %s", type(listener).__name__, change.alarm.id, exc)
                except Exception:
                    log.exception("%s failed on alarm %s", type(listener).__name__, change.alarm.id)
