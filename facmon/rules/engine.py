"""The pure core of the rule engine: `evaluate(rules, state, reading, now) -> (state, events)`.

No I/O and no clock: the caller passes the time in and persists what comes out. The state says which
(rule, device) conditions hold and at which severity; the events say what changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType

from facmon.facility.model import Reading, Scalar, Severity
from facmon.rules.conditions import CompiledLevel, CompiledRule, RuleSet, format_value

ConditionKey = tuple[str, str]  # (rule id, device id)


@dataclass(frozen=True, slots=True)
class ActiveCondition:
    severity: Severity
    since: datetime
    value: Scalar


@dataclass(frozen=True, slots=True)
class EngineState:
    active: Mapping[ConditionKey, ActiveCondition] = field(default_factory=lambda: MappingProxyType({}))

    def with_changes(self, changes: dict[ConditionKey, ActiveCondition | None]) -> EngineState:
        if not changes:
            return self
        active = dict(self.active)
        for key, condition in changes.items():
            if condition is None:
                active.pop(key, None)
            else:
                active[key] = condition
        return EngineState(MappingProxyType(active))


class ConditionChange(StrEnum):
    RAISED = "raised"
    SEVERITY_CHANGED = "severity_changed"
    CLEARED = "cleared"


@dataclass(frozen=True, slots=True)
class ConditionEvent:
    kind: ConditionChange
    rule: str
    device_id: str
    severity: Severity
    value: Scalar
    message: str
    at: datetime


def evaluate(
    rules: RuleSet, state: EngineState, reading: Reading, now: datetime
) -> tuple[EngineState, list[ConditionEvent]]:
    """Judge one reading against the rules of its device."""
    events: list[ConditionEvent] = []
    changes: dict[ConditionKey, ActiveCondition | None] = {}
    for rule in rules.for_device(reading.device_id):
        verdict = _judge(rule, reading)
        if verdict is None:
            continue  # the reading does not carry the rule's fields: nothing learnt
        key = (rule.id, reading.device_id)
        current = state.active.get(key)
        hit, field_name, value = verdict
        if hit is None:
            if current is not None:
                changes[key] = None
                message = f"{rule.name}: {field_name} back to normal ({format_value(value)})"
                events.append(
                    ConditionEvent(
                        ConditionChange.CLEARED, rule.id, reading.device_id, current.severity, value, message, now
                    )
                )
            continue
        message = hit.message or f"{rule.name}: {field_name} {hit.describe(value)}"
        if current is None:
            changes[key] = ActiveCondition(hit.severity, now, value)
            events.append(
                ConditionEvent(ConditionChange.RAISED, rule.id, reading.device_id, hit.severity, value, message, now)
            )
        elif current.severity != hit.severity:
            changes[key] = ActiveCondition(hit.severity, current.since, value)
            events.append(
                ConditionEvent(
                    ConditionChange.SEVERITY_CHANGED, rule.id, reading.device_id, hit.severity, value, message, now
                )
            )
    return state.with_changes(changes), events


def _judge(rule: CompiledRule, reading: Reading) -> tuple[CompiledLevel | None, str, Scalar] | None:
    """The worst level that holds over the rule's fields, with the field and value that made it hold."""
    seen: tuple[str, Scalar] | None = None
    for level in rule.levels:
        for name in rule.fields:
            if name not in reading.fields:
                continue
            value = reading.fields[name]
            if seen is None:
                seen = (name, value)
            if level.holds(value):
                return level, name, value
    if seen is None:
        return None
    return None, seen[0], seen[1]
