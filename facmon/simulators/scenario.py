"""Scenarios: YAML timelines of faults, with the alarms each is meant to raise kept beside it.

```yaml
name: pipe-burst-night
description: A riser bursts at 02:40; the pump room sees pressure collapse.
start: "02:30"          # facility local time of day when the scenario begins (daily demand profiles)
duration: 40m
events:
  - {at: 10m, device: pump-1, fault: pipe_burst, for: 20m, to_bar: 0.8}
  - {at: 5m, gateway: gw-riverside-2, fault: outage, for: 12m}
expect:                 # exactly these alarms, and no others, are shown to operators
  - {rule: pipe-burst, device: pump-1, severity: critical}
expect_flood: false     # whether the site's alarm rate makes a flood (more than 10 in 10 minutes)
```

`expect` names each (rule, device) that raises an alarm operators see (not suppressed), with the highest
severity it reaches.

An event names a `device` and one of its type's faults (facmon.simulators.devices.FAULTS), or a `gateway`
and one of GATEWAY_FAULTS; other keys are the fault's parameters. Without `for`, a fault lasts to the end.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time, timedelta
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from facmon.config.durations import parse_duration
from facmon.config.registry import DeviceRegistry
from facmon.facility.model import Severity
from facmon.simulators.devices import FAULTS
from facmon.simulators.errors import ScenarioError

# Faults of a gateway rather than a device: offline (its will says so) with readings buffered and flushed as
# array payloads when it is back; a clock that runs ahead or behind; resends; a share of malformed messages.
GATEWAY_FAULTS = frozenset({"outage", "clock_skew", "duplicates", "malformed"})

Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


class _Event(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)

    at: Duration
    fault: str
    device: str | None = None
    gateway: str | None = None
    for_: Duration | None = Field(None, alias="for")

    @model_validator(mode="after")
    def _one_target(self) -> _Event:
        if (self.device is None) == (self.gateway is None):
            raise ValueError("name either a device or a gateway")
        return self


class _Expected(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rule: str
    device: str
    severity: Severity


class _Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    start: time = time(0, 0)
    duration: Duration
    events: list[_Event] = []
    expect: list[_Expected] = []
    expect_flood: bool = False

    @model_validator(mode="before")
    @classmethod
    def _start_as_text(cls, data: Any) -> Any:
        # YAML reads an unquoted 02:30 as a number of minutes (sexagesimal); ask for quotes instead.
        if isinstance(data, dict) and isinstance(data.get("start"), int):
            raise ValueError('write start as a quoted local time, e.g. start: "02:30"')
        return data


@dataclass(frozen=True, slots=True)
class Event:
    at_s: float
    fault: str
    device: str | None
    gateway: str | None
    end_s: float
    params: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ExpectedAlarm:
    rule: str
    device: str
    severity: Severity


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    start_hour: float
    duration_s: float
    events: tuple[Event, ...]
    expect: tuple[ExpectedAlarm, ...]
    expect_flood: bool = False

    def check(self, registry: DeviceRegistry, gateways: set[str]) -> None:
        """Raise ScenarioError when an event names a device, gateway or fault the facility does not have."""
        for i, event in enumerate(self.events):
            where = f"scenario {self.name}: events.{i}"
            if event.device is not None:
                device = registry.get(event.device)
                if device is None:
                    raise ScenarioError(f"{where}: no device {event.device!r} in the facility")
                if event.fault not in FAULTS[device.type]:
                    known = ", ".join(sorted(FAULTS[device.type]))
                    raise ScenarioError(f"{where}: {device.type} devices have no fault {event.fault!r}; known: {known}")
            elif event.gateway not in gateways:
                raise ScenarioError(f"{where}: no gateway {event.gateway!r} in the facility")
        for i, alarm in enumerate(self.expect):
            if registry.get(alarm.device) is None:
                raise ScenarioError(f"scenario {self.name}: expect.{i}: no device {alarm.device!r} in the facility")


def parse_scenario(text: str, source: str) -> Scenario:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{source}: not valid YAML: {getattr(exc, 'problem', None) or exc}") from None
    try:
        model = _Scenario.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(part) for part in first["loc"])
        message = str(first["msg"]).removeprefix("Value error, ")
        raise ScenarioError(f"{source}: {loc + ': ' if loc else ''}{message}") from None
    events = []
    for i, e in enumerate(model.events):
        if e.fault not in GATEWAY_FAULTS and e.gateway is not None:
            raise ScenarioError(
                f"{source}: events.{i}: a gateway's fault is one of {', '.join(sorted(GATEWAY_FAULTS))}"
            )
        if e.fault in GATEWAY_FAULTS and e.device is not None:
            raise ScenarioError(f"{source}: events.{i}: {e.fault} is a gateway's fault: name a gateway")
        at = e.at.total_seconds()
        end = at + e.for_.total_seconds() if e.for_ is not None else model.duration.total_seconds()
        events.append(Event(at, e.fault, e.device, e.gateway, end, dict(e.model_extra or {})))
    start = model.start
    return Scenario(
        name=model.name,
        description=model.description,
        start_hour=start.hour + start.minute / 60 + start.second / 3600,
        duration_s=model.duration.total_seconds(),
        events=tuple(sorted(events, key=lambda e: e.at_s)),
        expect=tuple(ExpectedAlarm(x.rule, x.device, x.severity) for x in model.expect),
        expect_flood=model.expect_flood,
    )


def shipped() -> dict[str, Path]:
    """The scenarios that come with facmon, by name."""
    folder = resources.files("facmon.simulators") / "scenarios"
    return {p.name.removesuffix(".yaml"): Path(str(p)) for p in folder.iterdir() if p.name.endswith(".yaml")}


def load_scenario(name_or_path: str) -> Scenario:
    """A shipped scenario by name, or a scenario file by path."""
    path = shipped().get(name_or_path) or Path(name_or_path)
    if not path.is_file():
        raise ScenarioError(f"no scenario {name_or_path!r}: one of {', '.join(sorted(shipped()))}, or a file")
    return parse_scenario(path.read_text(encoding="utf-8"), str(path))
