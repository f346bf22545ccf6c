"""The pure core of the rule engine.

`evaluate(rules, state, reading, now) -> (state, events)` judges one reading; `tick(rules, state, now)` lets time
pass when no reading comes (on- and off-delays run out, devices fall silent). No I/O and no clock: the caller
passes the time in and persists what comes out. The state remembers, per (rule, device), whether its condition
is active and at which severity, the delays under way, the device's latest values and the recent history that
rates of change and derived values need. It is a persistent map: a new state shares all but what changed.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

import immutables
import numpy as np

from facmon.facility.clock import epoch_ms
from facmon.facility.model import Device, Reading, Scalar, Severity
from facmon.rules.conditions import DERIVED, Check, CompiledLevel, CompiledRule, RuleSet

ConditionKey = tuple[str, str]  # (rule id, device id)
Window = tuple[tuple[int, float], ...]  # (ts ms, value), oldest first


@dataclass(slots=True)
class Memory:
    """What the engine keeps about one rule on one device. Times are epoch milliseconds.

    Never changed once made: the engine makes a new one for every change, and the processor tells a change by
    identity. Not declared frozen only because a frozen dataclass costs three times as much to construct, and
    one is made for every rule on every reading.
    """

    active: Severity | None = None
    since_ms: int | None = None
    pending: Severity | None = None  # the condition holds; the on-delay is running
    pending_since_ms: int | None = None
    clearing_since_ms: int | None = None  # the condition stopped holding; the off-delay is running
    last_seen_ms: int | None = None  # when the device last sent anything (time of processing)
    suppressed: bool = False
    message: str = ""
    value: Scalar = None
    values: Mapping[str, Scalar] = field(default_factory=dict)
    windows: Mapping[str, Window] = field(default_factory=dict)
    starts: tuple[int, ...] = ()  # when the starts_per_hour field last went from false to true

    def to_json(self) -> dict[str, Any]:
        return {
            "active": self.active,
            "since_ms": self.since_ms,
            "pending": self.pending,
            "pending_since_ms": self.pending_since_ms,
            "clearing_since_ms": self.clearing_since_ms,
            "last_seen_ms": self.last_seen_ms,
            "suppressed": self.suppressed,
            "message": self.message,
            "value": self.value,
            "values": dict(self.values),
            "windows": {k: [list(p) for p in v] for k, v in self.windows.items()},
            "starts": list(self.starts),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Memory:
        return cls(
            active=Severity(data["active"]) if data.get("active") else None,
            since_ms=data.get("since_ms"),
            pending=Severity(data["pending"]) if data.get("pending") else None,
            pending_since_ms=data.get("pending_since_ms"),
            clearing_since_ms=data.get("clearing_since_ms"),
            last_seen_ms=data.get("last_seen_ms"),
            suppressed=bool(data.get("suppressed")),
            message=data.get("message", ""),
            value=data.get("value"),
            values=dict(data.get("values", {})),
            windows={k: tuple((int(t), float(v)) for t, v in pts) for k, pts in data.get("windows", {}).items()},
            starts=tuple(data.get("starts", ())),
        )


@dataclass(frozen=True, slots=True)
class EngineState:
    memory: immutables.Map[ConditionKey, Memory] = field(default_factory=immutables.Map)

    def active(self) -> dict[ConditionKey, Memory]:
        return {key: mem for key, mem in self.memory.items() if mem.active is not None}


class ConditionChange(StrEnum):
    RAISED = "raised"
    SEVERITY_CHANGED = "severity_changed"
    CLEARED = "cleared"
    SUPPRESSED = "suppressed"
    UNSUPPRESSED = "unsuppressed"


@dataclass(frozen=True, slots=True)
class ConditionEvent:
    kind: ConditionChange
    rule: str
    device_id: str
    severity: Severity
    value: Scalar
    message: str
    at: datetime
    suppressed: bool = False
    latched: bool = False


Hit = tuple[CompiledLevel, str, Scalar]  # the level that holds, the field that made it hold, its value


def evaluate(
    rules: RuleSet, state: EngineState, reading: Reading, now: datetime, now_ms: int | None = None
) -> tuple[EngineState, list[ConditionEvent]]:
    """Judge one reading against the rules of its device; `now_ms`, when given, is `now` in epoch ms."""
    if now_ms is None:
        now_ms = epoch_ms(now)
    events: list[ConditionEvent] = []
    toggled: set[str] = set()
    with state.memory.mutate() as memory:
        for rule in rules.for_device(reading.device_id):
            key = (rule.id, reading.device_id)
            if rule.reads.isdisjoint(reading.fields):
                if not rule.no_data_ms:
                    continue  # nothing in this reading for this rule
                quiet = memory.get(key)
                if quiet is not None and quiet.active is None and quiet.pending is None and not rule.derived:
                    # Only that the device spoke: the silence rule's clock restarts, nothing else can change.
                    memory[key] = _heard(quiet, now_ms)
                    continue
            found = memory.get(key)
            if found is not None and _nothing_new(rule, found, reading.fields):
                continue
            before = found or Memory()
            mem = _observe(rule, before, reading, now_ms)
            if rule.derived:
                derived = _derive(rule, mem, reading.ts_ms)
                if derived is not None:
                    # Kept with the other values, so that the ticker judges it as the readings did.
                    mem = replace(mem, values={**mem.values, DERIVED: derived})
            values = mem.values  # read only from here on
            mem, new = _advance(rule, mem, _worst(rule, values, mem), now, now_ms)
            mem, new = _suppression(rules, memory, rule, mem, values, new, now)
            memory[key] = mem
            events += new
            if rule.suppresses and (before.active is None) != (mem.active is None):
                toggled.add(rule.id)
        if toggled:
            events += _resuppress(rules, memory, toggled, now)
        result = memory.finish()
    return EngineState(result), events


def tick(rules: RuleSet, state: EngineState, now: datetime) -> tuple[EngineState, list[ConditionEvent]]:
    """Let time pass: run out on- and off-delays, raise alarms for devices that have gone silent."""
    now_ms = epoch_ms(now)
    events: list[ConditionEvent] = []
    toggled: set[str] = set()
    with state.memory.mutate() as memory:
        for rule in rules.all():
            key = (rule.id, rule.device.id)
            before = memory.get(key)
            mem = before
            if rule.no_data_ms:
                if mem is None or mem.last_seen_ms is None:
                    # Never heard of since facmon started: count the silence from now.
                    mem = replace(mem or Memory(), last_seen_ms=now_ms)
                silent_ms = now_ms - (mem.last_seen_ms or now_ms)
                silence = _silence(rule, silent_ms)
                delays = mem.pending is not None or mem.clearing_since_ms is not None
                if silence is not None or mem.active is not None or delays:
                    # Silence does not make a known worse condition better: the worse of the two holds.
                    known = _worst(rule, dict(mem.values), mem)
                    hits = [h for h in (silence, known) if h is not None]
                    hit = max(hits, key=lambda h: h[0].severity.rank) if hits else None
                    mem, new = _advance(rule, mem, hit, now, now_ms)
                    events += new
            elif mem is not None and (mem.pending is not None or mem.clearing_since_ms is not None):
                hit = _worst(rule, dict(mem.values), mem) if mem.pending is not None else None
                mem, new = _advance(rule, mem, hit, now, now_ms)
                events += new
            if mem is not None and mem is not before:
                memory[key] = mem
                if rule.suppresses and (before is None or before.active is None) != (mem.active is None):
                    toggled.add(rule.id)
        events += _resuppress(rules, memory, toggled, now)
        result = memory.finish()
    return EngineState(result), events


def resume(state: EngineState, now: datetime) -> EngineState:
    """After facmon was down: count devices' silence from now, not from before the gap nobody listened in.

    An alarm already active keeps its count: a device silent before the stop is still silent until it speaks.
    """
    now_ms = epoch_ms(now)
    with state.memory.mutate() as memory:
        for key, mem in state.memory.items():
            if mem.active is None and mem.last_seen_ms is not None and mem.last_seen_ms < now_ms:
                memory[key] = replace(mem, last_seen_ms=now_ms)
        resumed = memory.finish()
    return EngineState(resumed)


def _observe(rule: CompiledRule, mem: Memory, reading: Reading, now_ms: int) -> Memory:
    """Take in what the reading says: latest values, recent history, pump starts, time last heard from."""
    fields = reading.fields
    values = dict(mem.values)
    for name in rule.reads:  # a rule reads a field or three; a reading carries several
        if name in fields:
            values[name] = fields[name]
    windows = mem.windows
    if rule.windows:
        slid = dict(windows)
        for name, span in rule.windows.items():
            value = fields.get(name)
            if value is None or isinstance(value, str):
                continue
            slid[name] = _slide(slid.get(name, ()), reading.ts_ms, float(value), span)
        windows = slid
    starts = mem.starts
    derived = rule.derived
    if derived is not None and derived.kind == "starts_per_hour":
        name = derived.fields[0]
        if fields.get(name) is True and mem.values.get(name) is False:
            starts = (*starts, reading.ts_ms)
        span = int(derived.window.total_seconds() * 1000)
        starts = tuple(t for t in starts if t > reading.ts_ms - span)
    return _heard(mem, now_ms, values, windows, starts)


def _nothing_new(rule: CompiledRule, mem: Memory, fields: Mapping[str, Scalar]) -> bool:
    """Whether the reading repeats what the rule already knows, so that judging it again would change nothing.

    Only for a rule without history, derived values or silence (those change with every reading), and with
    no delay running (a delay runs out on a reading as well as on a tick).
    """
    if rule.windows or rule.derived is not None or rule.no_data_ms:
        return False
    if mem.pending is not None or mem.clearing_since_ms is not None:
        return False
    known = mem.values
    for name in rule.reads:
        if name in fields:
            value = fields[name]
            if name not in known or known[name] != value or type(known[name]) is not type(value):
                return False
    return True


def _heard(
    mem: Memory,
    now_ms: int,
    values: Mapping[str, Scalar] | None = None,
    windows: Mapping[str, Window] | None = None,
    starts: tuple[int, ...] | None = None,
) -> Memory:
    """The memory with the device heard from at `now_ms`, and new values, windows and starts where given.

    Called for every rule on every reading: the constructor, not dataclasses.replace, which costs several
    times more.
    """
    return Memory(
        active=mem.active,
        since_ms=mem.since_ms,
        pending=mem.pending,
        pending_since_ms=mem.pending_since_ms,
        clearing_since_ms=mem.clearing_since_ms,
        last_seen_ms=now_ms,
        suppressed=mem.suppressed,
        message=mem.message,
        value=mem.value,
        values=mem.values if values is None else values,
        windows=mem.windows if windows is None else windows,
        starts=mem.starts if starts is None else starts,
    )


def _slide(window: Window, ts_ms: int, value: float, span_ms: int) -> Window:
    """The window with the new sample in its place and samples older than `span_ms` before the newest dropped.

    Readings mostly come in order: then this is a bisect and a slice, in C, not a filter and a sort.
    """
    newest = max(ts_ms, window[-1][0]) if window else ts_ms
    kept = window[bisect_right(window, (newest - span_ms, math.inf)) :]
    if not kept or ts_ms > kept[-1][0]:
        return (*kept, (ts_ms, value))
    if ts_ms <= newest - span_ms:
        return kept  # older than anything the window looks at
    # A late reading, or a resend of the same time: placed at its own time, replacing a sample of that time.
    i = bisect_left(kept, (ts_ms, -math.inf))
    j = i + 1 if i < len(kept) and kept[i][0] == ts_ms else i
    return (*kept[:i], (ts_ms, value), *kept[j:])


def _derive(rule: CompiledRule, mem: Memory, ts_ms: int) -> float | None:
    derived = rule.derived
    assert derived is not None
    if derived.kind == "unbalance":
        phases = [mem.values.get(name) for name in derived.fields]
        numbers = [float(v) for v in phases if type(v) in (int, float)]  # type: ignore[arg-type]
        if len(numbers) != len(phases):
            return None
        mean = sum(numbers) / len(numbers)
        return 0.0 if mean == 0 else max(abs(v - mean) for v in numbers) / mean * 100
    span_h = derived.window.total_seconds() / 3600
    if derived.kind == "starts_per_hour":
        return len(mem.starts) / span_h
    points = mem.windows.get(derived.fields[0], ())
    if len(points) < 10:
        return None  # too little history to call anything an anomaly
    history = np.fromiter((v for t, v in points if t != ts_ms), dtype=float)
    current = next((v for t, v in points if t == ts_ms), None)
    std = float(history.std())
    if current is None or std == 0 or math.isnan(std):
        return None
    return abs(current - float(history.mean())) / std


def _worst(rule: CompiledRule, values: Mapping[str, Scalar], mem: Memory) -> Hit | None:
    """The worst level whose condition holds; the active level keeps holding until past its deadband."""
    for level in rule.levels:
        if level.test.kind == "no_data":
            continue
        found = level.test.holds(values, mem.windows, active=mem.active == level.severity)
        if found is not None:
            return level, found[0], found[1]
    return None


def _silence(rule: CompiledRule, silent_ms: int) -> Hit | None:
    for level in rule.levels:
        if level.test.kind == "no_data" and silent_ms >= level.test.no_data_ms:
            return level, "", None
    return None


def _advance(
    rule: CompiledRule, mem: Memory, hit: Hit | None, now: datetime, now_ms: int
) -> tuple[Memory, list[ConditionEvent]]:
    """Move the condition's state with the delays: pending → active → clearing → normal."""
    if hit is not None:
        level, name, value = hit
        message = level.message or f"{rule.name}: {_describe(rule, level, name, value, mem)}"
        if mem.active is not None:
            if level.severity == mem.active and mem.clearing_since_ms is None and mem.value == value:
                return mem, []  # unchanged: the same object, so nothing is marked for saving
            mem = replace(mem, clearing_since_ms=None, message=message, value=value)
            if level.severity == mem.active:
                return mem, []
            mem = replace(mem, active=level.severity)
            return mem, [_event(ConditionChange.SEVERITY_CHANGED, rule, mem, now)]
        since = mem.pending_since_ms if mem.pending is not None else now_ms
        mem = replace(mem, pending=level.severity, pending_since_ms=since, message=message, value=value)
        if now_ms - (since or now_ms) < rule.for_ms:
            return mem, []
        mem = replace(mem, active=level.severity, since_ms=now_ms, pending=None, pending_since_ms=None)
        return mem, [_event(ConditionChange.RAISED, rule, mem, now)]
    if mem.active is None:
        return (mem, []) if mem.pending is None else (replace(mem, pending=None, pending_since_ms=None), [])
    mem = replace(mem, pending=None, pending_since_ms=None)
    since = mem.clearing_since_ms if mem.clearing_since_ms is not None else now_ms
    if now_ms - since < rule.clear_for_ms:
        return replace(mem, clearing_since_ms=since), []
    value = _primary_value(rule, mem)
    cleared = replace(mem, clearing_since_ms=None, message=f"{rule.name}: back to normal", value=value)
    event = _event(ConditionChange.CLEARED, rule, cleared, now)
    return replace(cleared, active=None, since_ms=None), [event]


def _describe(rule: CompiledRule, level: CompiledLevel, name: str, value: Scalar, mem: Memory) -> str:
    if level.test.kind == "no_data":
        return f"no data for {level.test.no_data_ms / 1000:g} s"
    shown = rule.derived.name if (name == DERIVED and rule.derived) else name
    return _find_test(level.test, name).describe(shown, name, value, mem.windows.get(name, ()))


def _find_test(test: Check, name: str) -> Check:
    """The test inside any/all that read `name`, for describing it."""
    if not test.parts:
        return test
    for part in test.parts:
        if name in part.fields or part.parts:
            return _find_test(part, name)
    return test


def _primary_value(rule: CompiledRule, mem: Memory) -> Scalar:
    names = [name for level in rule.levels for name in level.test.fields if name in mem.values]
    return mem.values.get(names[0]) if names else None


def _suppression(
    rules: RuleSet,
    memory: Any,
    rule: CompiledRule,
    mem: Memory,
    values: Mapping[str, Scalar],
    events: list[ConditionEvent],
    now: datetime,
) -> tuple[Memory, list[ConditionEvent]]:
    """Designed suppression: by the device's own state (`suppress_when`) or by another rule's active alarm."""
    by_state = rule.suppress_when is not None and rule.suppress_when.holds(values, mem.windows, False) is not None
    suppressed = by_state or _suppressed_by_rule(rules, memory, rule)
    if suppressed == mem.suppressed:
        return mem, events
    mem = replace(mem, suppressed=suppressed)
    events = [replace(e, suppressed=suppressed) for e in events]
    if mem.active is not None and not any(e.kind is ConditionChange.RAISED for e in events):
        kind = ConditionChange.SUPPRESSED if suppressed else ConditionChange.UNSUPPRESSED
        events.append(_event(kind, rule, mem, now))
    return mem, events


def _suppressed_by_rule(rules: RuleSet, memory: Any, rule: CompiledRule) -> bool:
    for suppressor_id, scope in rules.suppressors.get(rule.id, ()):
        for suppressor in rules.by_id(suppressor_id):
            mem = memory.get((suppressor_id, suppressor.device.id))
            if mem is not None and mem.active is not None and _in_scope(scope, suppressor.device, rule.device):
                return True
    return False


def _resuppress(rules: RuleSet, memory: Any, toggled: Iterable[str], now: datetime) -> list[ConditionEvent]:
    """A suppressing rule went active or back: update the alarms it suppresses on other devices."""
    events: list[ConditionEvent] = []
    targets = {target for rule_id in toggled for r in rules.by_id(rule_id)[:1] for target in r.suppresses}
    for target in sorted(targets):
        for rule in rules.by_id(target):
            key = (rule.id, rule.device.id)
            mem = memory.get(key)
            if mem is None:
                continue
            values = dict(mem.values)
            by_state = rule.suppress_when is not None and rule.suppress_when.holds(values, mem.windows, False)
            suppressed = bool(by_state) or _suppressed_by_rule(rules, memory, rule)
            if suppressed != mem.suppressed:
                mem = replace(mem, suppressed=suppressed)
                memory[key] = mem
                if mem.active is not None:
                    kind = ConditionChange.SUPPRESSED if suppressed else ConditionChange.UNSUPPRESSED
                    events.append(_event(kind, rule, mem, now))
    return events


def _in_scope(scope: str, a: Device, b: Device) -> bool:
    if scope == "device":
        return a.id == b.id
    if scope == "building":
        return a.site == b.site and a.building == b.building
    return a.site == b.site


def _event(kind: ConditionChange, rule: CompiledRule, mem: Memory, now: datetime) -> ConditionEvent:
    severity = mem.active or mem.pending or Severity.WARNING
    return ConditionEvent(
        kind, rule.id, rule.device.id, severity, mem.value, mem.message, now, mem.suppressed, rule.latched
    )
