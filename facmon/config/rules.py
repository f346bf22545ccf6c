"""Alarm rules as the config writes them: which devices, which value, which levels, and how they behave.

A level's condition is one of: `above`/`below` a threshold (a number, or `90%` of the device's nominal value),
`equals`/`in` for states and booleans, `falls`/`rises` by an amount `within` a time (rate of change),
`no_data` for a time, or `any`/`all` of other conditions. The rule adds a deadband, on- and off-delays,
latching, and designed suppression.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, Field, model_validator

from facmon.config.types import SECTION, Duration, Identifier, Location, as_list
from facmon.facility.model import Device, DeviceType, Severity
from facmon.facility.telemetry import FIELDS, FieldSpec, Kind

_PERCENT = re.compile(r"\s*(\d+(?:\.\d+)?)\s*%\s*")


def _state_or_flag(value: object) -> object:
    # A quoted "yes" or "1" stays the text of a state; a bare number is a threshold written in the wrong place.
    if value is None or isinstance(value, bool | str):
        return value
    raise ValueError("equals takes true, false or a state such as fault; numbers are judged with above or below")


def _threshold(value: object) -> object:
    if isinstance(value, str) and not _PERCENT.fullmatch(value):
        raise ValueError(f"{value!r} is neither a number nor a percentage such as 90%")
    return value


# A number in the field's unit, or a percentage: of the device's nominal value (thresholds), of the rule's range
# or else of the threshold (deadband).
Threshold = Annotated[float | str, Field(union_mode="left_to_right"), BeforeValidator(_threshold)]


def percent(value: float | str) -> float | None:
    """60 for "60%", None for a plain number."""
    if isinstance(value, str):
        match = _PERCENT.fullmatch(value)
        return float(match.group(1)) if match else None
    return None


class _Model(BaseModel):
    model_config = SECTION


class Selector(_Model):
    """Which devices a rule applies to; every given criterion must match, an empty selector matches all."""

    types: Annotated[list[DeviceType], BeforeValidator(as_list)] = []
    sites: Annotated[list[str], BeforeValidator(as_list)] = []
    buildings: Annotated[list[str], BeforeValidator(as_list)] = []
    ids: Annotated[list[str], BeforeValidator(as_list)] = []
    labels: dict[str, str] = {}

    def matches(self, device: Device) -> bool:
        return (
            (not self.types or device.type in self.types)
            and (not self.sites or device.site in self.sites)
            and (not self.buildings or device.building in self.buildings)
            and (not self.ids or device.id in self.ids)
            and all(device.labels.get(k) == v for k, v in self.labels.items())
        )


_KINDS = ("above", "below", "equals", "in_", "falls", "rises", "no_data", "any", "all")


class Condition(_Model):
    """One test; `field` defaults to the rule's field(s) or derived value."""

    field: str | None = None
    above: Threshold | None = None
    below: Threshold | None = None
    equals: Annotated[bool | str | None, BeforeValidator(_state_or_flag)] = None
    in_: list[str] | None = Field(None, alias="in")
    falls: float | None = Field(None, gt=0)
    rises: float | None = Field(None, gt=0)
    within: Duration | None = None
    no_data: Duration | None = None
    any: list[Condition] | None = Field(None, min_length=1)
    all: list[Condition] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _one_kind(self) -> Condition:
        given = [k.rstrip("_") for k in _KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "a condition is exactly one of above, below, equals, in, falls, rises, no_data, any or all"
                + (f" (got {', '.join(given)})" if given else "")
            )
        if (self.falls is not None or self.rises is not None) != (self.within is not None):
            raise ValueError("falls and rises go with within: the time the change happens in")
        for part in (self.any or []) + (self.all or []):
            if part.no_data is not None:
                raise ValueError("no_data stands on its own, not inside any or all")
        return self

    @property
    def kind(self) -> str:
        return next(k.rstrip("_") for k in _KINDS if getattr(self, k) is not None)

    @property
    def numeric(self) -> bool:
        return self.kind in ("above", "below", "falls", "rises")

    def walk(self, loc: Location) -> Iterator[tuple[Condition, Location]]:
        """This condition and those nested in it, with where each stands in the config."""
        yield self, loc
        for key in ("any", "all"):
            for i, part in enumerate(getattr(self, key) or []):
                yield from part.walk((*loc, key, i))


class Level(Condition):
    """A condition and the severity raised while it holds."""

    severity: Severity
    message: str | None = None


class Derived(_Model):
    """A value computed from a device's readings instead of read from one field.

    `unbalance`: the largest deviation of the fields from their mean, in % of the mean (NEMA), e.g. over the
    three phase voltages; `starts_per_hour`: how often a boolean field went from false to true in the last
    `window`, scaled to an hour (pump short-cycling); `deviation`: how many standard deviations the newest
    value is from the mean of the last `window` (anomaly).
    """

    kind: Literal["unbalance", "starts_per_hour", "deviation"]
    fields: Annotated[list[str], BeforeValidator(as_list), Field(min_length=1)]
    window: Duration = timedelta(hours=1)

    @model_validator(mode="after")
    def _field_count(self) -> Derived:
        if self.kind == "unbalance" and len(self.fields) < 2:
            raise ValueError("unbalance needs at least two fields, such as the three phase voltages")
        if self.kind != "unbalance" and len(self.fields) != 1:
            raise ValueError(f"{self.kind} is computed from exactly one field")
        return self

    @property
    def name(self) -> str:
        """How messages name the value: `unbalance of voltage_l1_v, …`."""
        return f"{self.kind.replace('_', ' ')} of {', '.join(self.fields)}"


class Suppresses(_Model):
    """While this rule's alarm is active, alarms of these rules in the same scope are suppressed by design."""

    rules: Annotated[list[str], BeforeValidator(as_list), Field(min_length=1)]
    scope: Literal["device", "building", "site"] = "site"


class RuleConfig(_Model):
    id: Identifier
    name: str
    description: str | None = None
    enabled: bool = True
    select: Selector = Selector()
    field: Annotated[list[str], BeforeValidator(as_list)] = []
    derived: Derived | None = None
    levels: list[Level] = Field(min_length=1)
    deadband: Threshold | None = None
    range: tuple[float, float] | None = None
    for_: Duration = Field(timedelta(0), alias="for")
    clear_for: Duration = timedelta(0)
    latched: bool = False
    suppress_when: Condition | None = None
    suppresses: Suppresses | None = None

    @model_validator(mode="after")
    def _value_source(self) -> RuleConfig:
        if self.field and self.derived:
            raise ValueError("a rule reads a field or a derived value, not both")
        for level in self.levels:
            for condition, _ in level.walk(()):
                if condition.kind in ("any", "all", "no_data") or condition.field:
                    continue
                if not (self.field or self.derived):
                    raise ValueError(f"the {condition.kind} condition needs the rule's field, derived or its own field")
        if self.range is not None and self.range[0] >= self.range[1]:
            raise ValueError("range is [low, high] with low below high")
        return self

    @property
    def sources(self) -> list[str]:
        """The fields the rule's conditions read when they name none."""
        return list(self.derived.fields) if self.derived else list(self.field)


def check_rule(
    rule: RuleConfig, loc: Location, devices: Sequence[Device], rule_ids: set[str]
) -> list[tuple[Location, str]]:
    """What is wrong with a rule given the devices it selects and the other rules."""
    found: list[tuple[Location, str]] = []
    if rule.suppresses:
        for i, other in enumerate(rule.suppresses.rules):
            if other not in rule_ids:
                found.append(((*loc, "suppresses", "rules", i), f"no rule has the id {other!r}"))
    types = sorted({d.type for d in devices})
    if rule.derived:
        found += _check_derived(rule.derived, (*loc, "derived"), types)
    else:
        for f, name in enumerate(rule.field):
            where = (*loc, "field", f) if len(rule.field) > 1 else (*loc, "field")
            found += [(where, problem) for problem in _unknown_field(name, types)]
    conditions = [(c, where) for i, lv in enumerate(rule.levels) for c, where in lv.walk((*loc, "levels", i))]
    if rule.suppress_when:
        conditions += list(rule.suppress_when.walk((*loc, "suppress_when")))
    for condition, where in conditions:
        if condition.kind in ("any", "all", "no_data"):
            continue
        if condition.field:
            found += [((*where, "field"), problem) for problem in _unknown_field(condition.field, types)]
            names = [condition.field]
        elif rule.derived:
            # Derived values have no nominal and no history of their own: plain thresholds only.
            if condition.kind not in ("above", "below"):
                found.append((where, f"a derived value is judged with above or below, not {condition.kind}"))
            elif percent(getattr(condition, condition.kind)) is not None:
                found.append((where, "a derived value's threshold is a number, not a percentage"))
            continue
        else:
            names = rule.field
        for name in names:
            for device_type in types:
                spec = FIELDS[device_type].get(name)
                problem = _mismatch(condition, spec) if spec else None
                if problem:
                    found.append((where, f"{problem} ({name} of {device_type})"))
        for key in ("above", "below"):
            value = getattr(condition, key)
            if value is not None and percent(value) is not None:
                for name in names:
                    found += _check_nominal(where, key, value, name, devices)
    return found


def nominal_key(spec: FieldSpec) -> str:
    """Which `nominal` entry a field's percentages refer to: its family's (`voltage_v`) or its own name."""
    return spec.nominal_key or spec.name


def _check_nominal(
    where: Location, key: str, value: float | str, name: str, devices: Sequence[Device]
) -> list[tuple[Location, str]]:
    found: list[tuple[Location, str]] = []
    for device in devices:
        spec = FIELDS[device.type].get(name)
        if spec is not None and nominal_key(spec) not in device.nominal:
            found.append(((*where, key), f"{value} needs nominal.{nominal_key(spec)} on device {device.id}"))
    return found


def _unknown_field(name: str, types: list[DeviceType]) -> list[str]:
    return [f"{name!r} is not a field of device type {t}" for t in types if name not in FIELDS[t]]


def _check_derived(derived: Derived, loc: Location, types: list[DeviceType]) -> list[tuple[Location, str]]:
    found: list[tuple[Location, str]] = []
    wanted = Kind.BOOLEAN if derived.kind == "starts_per_hour" else Kind.NUMBER
    for i, name in enumerate(derived.fields):
        for device_type in types:
            spec = FIELDS[device_type].get(name)
            if spec is None:
                found.append(((*loc, "fields", i), f"{name!r} is not a field of device type {device_type}"))
            elif (spec.kind is Kind.BOOLEAN) != (wanted is Kind.BOOLEAN) or spec.kind in (Kind.ENUM, Kind.STRING):
                found.append(((*loc, "fields", i), f"{derived.kind} needs a {wanted} field; {name} is {spec.kind}"))
    return found


def _mismatch(condition: Condition, spec: FieldSpec) -> str | None:
    numeric = spec.numeric
    if condition.numeric and not numeric:
        return f"{condition.kind} needs a numeric field"
    if numeric and not condition.numeric:
        return "a numeric field is judged with above, below, falls or rises, not equals or in"
    if condition.numeric:
        return None
    values: list[object] = list(condition.in_) if condition.in_ is not None else [condition.equals]
    if spec.kind is Kind.BOOLEAN and not all(isinstance(v, bool) for v in values):
        return "a boolean field is matched with equals: true or equals: false"
    if spec.kind is Kind.ENUM:
        wrong = [v for v in values if v not in spec.choices]
        if wrong:
            return f"{', '.join(map(repr, wrong))} not among {', '.join(spec.choices)}"
    return None
