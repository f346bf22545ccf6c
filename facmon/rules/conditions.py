"""Rules compiled for each device they select: thresholds resolved against the device's nominal values."""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Mapping
from dataclasses import dataclass
from operator import itemgetter

from facmon.config.registry import DeviceRegistry
from facmon.config.rules import Condition, Derived, RuleConfig, nominal_key, percent
from facmon.facility.model import Device, Scalar, Severity
from facmon.facility.telemetry import FIELDS

# Where a rule's derived value sits among the values a condition can read.
DERIVED = "~derived"

Values = Mapping[str, Scalar]


@dataclass(frozen=True, slots=True)
class Check:
    """A compiled condition: what it reads and what makes it hold."""

    kind: str
    fields: tuple[str, ...]
    # above/below: per field; falls/rises: the amount, under every field
    limits: Mapping[str, float]
    deadband: Mapping[str, float]
    within_ms: int = 0
    no_data_ms: int = 0
    expected: Scalar = None
    one_of: frozenset[Scalar] | None = None
    parts: tuple[Check, ...] = ()

    def holds(
        self, values: Values, windows: Mapping[str, tuple[tuple[int, float], ...]], active: bool
    ) -> tuple[str, Scalar] | None:
        """The field and value that make the test hold, or None; `active` widens thresholds by the deadband."""
        if self.kind in ("any", "all"):
            results = [part.holds(values, windows, active) for part in self.parts]
            if self.kind == "any":
                return next((r for r in results if r is not None), None)
            return results[0] if all(r is not None for r in results) else None
        for name in self.fields:
            if name not in values:
                continue
            value = values[name]
            if self._holds_for(name, value, windows.get(name, ()), active):
                return name, value
        return None

    def _holds_for(self, name: str, value: Scalar, window: tuple[tuple[int, float], ...], active: bool) -> bool:
        kind = self.kind
        if kind == "equals":
            # `equals: true` must not match the number 1, nor `equals: 1` the boolean true.
            return type(value) is type(self.expected) and value == self.expected
        if kind == "in":
            return self.one_of is not None and value in self.one_of
        if not _is_number(value):
            return False
        number = float(value)  # type: ignore[arg-type]
        if kind == "above":
            return number > self.limits[name] - (self.deadband.get(name, 0.0) if active else 0.0)
        if kind == "below":
            return number < self.limits[name] + (self.deadband.get(name, 0.0) if active else 0.0)
        if kind in ("falls", "rises"):
            recent = self.recent(window)
            if not recent:
                return False
            # max/min with a C-level key: these windows can hold thousands of samples at high reading rates.
            if kind == "falls":
                return max(recent, key=_value)[1] - number >= self.limits[name]
            return number - min(recent, key=_value)[1] >= self.limits[name]
        return False  # no_data holds only on the ticker, never on a reading

    def recent(self, window: tuple[tuple[int, float], ...]) -> tuple[tuple[int, float], ...]:
        """The part of a field's history this rate looks at: `within` back from the newest sample."""
        if not window:
            return window
        return window[bisect_left(window, (window[-1][0] - self.within_ms, -math.inf)) :]

    def describe(self, shown: str, name: str, value: Scalar, window: tuple[tuple[int, float], ...]) -> str:
        """How `value` of field `name`, called `shown` in messages, meets the test."""
        if self.kind == "above":
            return f"{shown} {format_value(value)} above {self.limits[name]:g}"
        if self.kind == "below":
            return f"{shown} {format_value(value)} below {self.limits[name]:g}"
        window = self.recent(window)
        if self.kind in ("falls", "rises") and window and _is_number(value):
            extreme = max(v for _, v in window) if self.kind == "falls" else min(v for _, v in window)
            verb = "fell" if self.kind == "falls" else "rose"
            change = abs(float(value) - extreme)  # type: ignore[arg-type]
            return f"{shown} {verb} by {change:g} to {format_value(value)} within {self.within_ms / 1000:g} s"
        return f"{shown} is {format_value(value)}"

    @property
    def window_fields(self) -> dict[str, int]:
        """Fields whose recent values this test needs, with how far back (ms)."""
        out = {name: self.within_ms for name in self.fields} if self.kind in ("falls", "rises") else {}
        for part in self.parts:
            for name, span in part.window_fields.items():
                out[name] = max(out.get(name, 0), span)
        return out


@dataclass(frozen=True, slots=True)
class CompiledLevel:
    severity: Severity
    test: Check
    message: str | None


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """One rule as it applies to one device."""

    id: str
    name: str
    device: Device
    levels: tuple[CompiledLevel, ...]  # worst severity first: the first level that holds is the one raised
    reads: frozenset[str]  # every field the rule looks at, so readings without them can be skipped
    windows: Mapping[str, int]  # field → how much history (ms) rate-of-change and derived values need
    derived: Derived | None
    for_ms: int
    clear_for_ms: int
    latched: bool
    no_data_ms: int  # 0 when the rule has no no_data level
    suppress_when: Check | None
    suppresses: tuple[str, ...]
    suppress_scope: str


class RuleSet:
    """The enabled rules compiled for each device, and which rules suppress which."""

    def __init__(
        self, rules: list[CompiledRule], registry: DeviceRegistry, configs: list[RuleConfig] | None = None
    ) -> None:
        self.registry = registry
        self.configs = configs or []
        self._by_device: dict[str, tuple[CompiledRule, ...]] = {}
        self._by_id: dict[str, list[CompiledRule]] = {}
        for rule in rules:
            self._by_device[rule.device.id] = (*self._by_device.get(rule.device.id, ()), rule)
            self._by_id.setdefault(rule.id, []).append(rule)
        self.ids = sorted({rule.id for rule in rules})
        # suppressed rule id → [(suppressing rule id, scope)]
        self.suppressors: dict[str, list[tuple[str, str]]] = {}
        for rule in {r.id: r for r in rules}.values():
            for target in rule.suppresses:
                self.suppressors.setdefault(target, []).append((rule.id, rule.suppress_scope))

    @classmethod
    def compile(cls, configs: list[RuleConfig], registry: DeviceRegistry) -> RuleSet:
        enabled = [config for config in configs if config.enabled]
        return cls(
            [compile_rule(c, device) for c in enabled for device in registry.select(c.select)], registry, configs
        )

    def for_device(self, device_id: str) -> tuple[CompiledRule, ...]:
        return self._by_device.get(device_id, ())

    def by_id(self, rule_id: str) -> list[CompiledRule]:
        """The rule as compiled for each device it selects."""
        return self._by_id.get(rule_id, [])

    def all(self) -> list[CompiledRule]:
        return [rule for rules in self._by_device.values() for rule in rules]


def compile_rule(config: RuleConfig, device: Device) -> CompiledRule:
    levels = [
        CompiledLevel(level.severity, _compile(level, config, device), level.message)
        for level in sorted(config.levels, key=lambda lv: -lv.severity.rank)
    ]
    suppress_when = _compile(config.suppress_when, config, device) if config.suppress_when else None
    tests = [lv.test for lv in levels] + ([suppress_when] if suppress_when else [])
    reads = {name for test in tests for name in _reads(test)}
    windows: dict[str, int] = {}
    for test in tests:
        for name, span in test.window_fields.items():
            windows[name] = max(windows.get(name, 0), span)
    if config.derived:
        reads |= set(config.derived.fields)
        if config.derived.kind != "unbalance":
            windows[config.derived.fields[0]] = int(config.derived.window.total_seconds() * 1000)
    return CompiledRule(
        id=config.id,
        name=config.name,
        device=device,
        levels=tuple(levels),
        reads=frozenset(reads - {DERIVED}),
        windows=windows,
        derived=config.derived,
        for_ms=int(config.for_.total_seconds() * 1000),
        clear_for_ms=int(config.clear_for.total_seconds() * 1000),
        latched=config.latched,
        no_data_ms=max((lv.test.no_data_ms for lv in levels), default=0),
        suppress_when=suppress_when,
        suppresses=tuple(config.suppresses.rules) if config.suppresses else (),
        suppress_scope=config.suppresses.scope if config.suppresses else "site",
    )


def _compile(condition: Condition, rule: RuleConfig, device: Device) -> Check:
    kind = condition.kind
    if kind in ("any", "all"):
        parts = tuple(_compile(part, rule, device) for part in (condition.any or condition.all or []))
        return Check(kind, (), {}, {}, parts=parts)
    if condition.field:
        fields: tuple[str, ...] = (condition.field,)
    elif rule.derived:
        fields = (DERIVED,)
    else:
        fields = tuple(rule.field)
    limits: dict[str, float] = {}
    deadband: dict[str, float] = {}
    if kind in ("above", "below"):
        raw = condition.above if kind == "above" else condition.below
        assert raw is not None
        for name in fields:
            limits[name] = _resolve(raw, name, device)
            if rule.deadband is not None:
                deadband[name] = _deadband(rule, limits[name])
    elif kind in ("falls", "rises"):
        amount = condition.falls if kind == "falls" else condition.rises
        assert amount is not None
        limits = dict.fromkeys(fields, amount)
    return Check(
        kind,
        fields,
        limits,
        deadband,
        within_ms=int(condition.within.total_seconds() * 1000) if condition.within else 0,
        no_data_ms=int(condition.no_data.total_seconds() * 1000) if condition.no_data else 0,
        expected=condition.equals,
        one_of=frozenset(condition.in_) if condition.in_ is not None else None,
    )


def _resolve(raw: float | str, name: str, device: Device) -> float:
    """A threshold in the field's unit: `90%` is 90 % of the device's nominal value for the field."""
    share = percent(raw)
    if share is None:
        return float(raw)
    spec = FIELDS[device.type].get(name)
    # check-config has made sure the nominal value exists for every device the rule selects.
    return share / 100 * device.nominal[nominal_key(spec)] if spec else float("nan")


def _deadband(rule: RuleConfig, limit: float) -> float:
    assert rule.deadband is not None
    share = percent(rule.deadband)
    if share is None:
        return float(rule.deadband)
    span = rule.range[1] - rule.range[0] if rule.range else abs(limit)
    return share / 100 * span


def _reads(test: Check) -> set[str]:
    return set(test.fields).union(*(_reads(part) for part in test.parts)) if test.parts else set(test.fields)


_value = itemgetter(1)


def _is_number(value: Scalar) -> bool:
    return type(value) is float or type(value) is int


def format_value(value: Scalar) -> str:
    """A reading's value as an operator reads it: `true`, `1.2`, `fault`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
