"""Rules compiled from config for fast evaluation: per device, the rules that apply and their levels."""

from __future__ import annotations

from dataclasses import dataclass

from facmon.facility.config import Level, RuleConfig
from facmon.facility.model import Scalar, Severity
from facmon.facility.registry import DeviceRegistry


@dataclass(frozen=True, slots=True)
class CompiledLevel:
    severity: Severity
    above: float | None
    below: float | None
    equals: Scalar
    one_of: frozenset[Scalar] | None
    message: str | None

    @classmethod
    def of(cls, level: Level) -> CompiledLevel:
        return cls(
            level.severity,
            level.above,
            level.below,
            level.equals,
            frozenset(level.in_) if level.in_ is not None else None,
            level.message,
        )

    def holds(self, value: Scalar) -> bool:
        if self.above is not None:
            return _is_number(value) and value > self.above  # type: ignore[operator]
        if self.below is not None:
            return _is_number(value) and value < self.below  # type: ignore[operator]
        if self.one_of is not None:
            return value in self.one_of
        # `equals: true` must not match the number 1, nor `equals: 1` the boolean true.
        return type(value) is type(self.equals) and value == self.equals

    def describe(self, value: Scalar) -> str:
        """How `value` meets this level, for the alarm's message: `1.2 below 1.5`, `is fault`."""
        if self.above is not None:
            return f"{format_value(value)} above {self.above:g}"
        if self.below is not None:
            return f"{format_value(value)} below {self.below:g}"
        return f"is {format_value(value)}"


@dataclass(frozen=True, slots=True)
class CompiledRule:
    id: str
    name: str
    fields: tuple[str, ...]
    # Worst severity first, so the first level that holds is the one to raise.
    levels: tuple[CompiledLevel, ...]


class RuleSet:
    """The enabled rules, indexed by the devices they select."""

    def __init__(self, rules: list[CompiledRule], by_device: dict[str, tuple[CompiledRule, ...]]) -> None:
        self.rules = rules
        self._by_device = by_device

    @classmethod
    def compile(cls, configs: list[RuleConfig], registry: DeviceRegistry) -> RuleSet:
        compiled: list[tuple[RuleConfig, CompiledRule]] = []
        for config in configs:
            if not config.enabled:
                continue
            levels = sorted((CompiledLevel.of(lv) for lv in config.levels), key=lambda lv: -lv.severity.rank)
            compiled.append((config, CompiledRule(config.id, config.name, tuple(config.field), tuple(levels))))
        by_device = {
            device.id: tuple(rule for config, rule in compiled if config.select.matches(device)) for device in registry
        }
        return cls([rule for _, rule in compiled], by_device)

    def for_device(self, device_id: str) -> tuple[CompiledRule, ...]:
        return self._by_device.get(device_id, ())


def _is_number(value: Scalar) -> bool:
    return type(value) is float or type(value) is int


def format_value(value: Scalar) -> str:
    """A reading's value as an operator reads it: `true`, `1.2`, `fault`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
