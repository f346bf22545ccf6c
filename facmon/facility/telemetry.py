"""The telemetry payload contract: which fields each device type sends, their types and plausible ranges.

Ingest validates against it, the rule config is checked against it and the simulators produce it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from facmon.facility.model import DeviceType


class Kind(StrEnum):
    NUMBER = "number"
    INTEGER = "integer"
    BOOLEAN = "boolean"
    STRING = "string"
    ENUM = "enum"


@dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str
    kind: Kind
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    nullable: bool = False
    # The upper bound is this many times the device's `nominal` value of the field family, when known.
    max_times_nominal: float | None = None
    nominal_key: str | None = None

    @property
    def numeric(self) -> bool:
        return self.kind in (Kind.NUMBER, Kind.INTEGER)


ELEVATOR_STATES = ("idle", "running", "door_open", "fault", "out_of_service", "inspection")
SMOKE_STATES = ("normal", "alarm", "fault", "test")


def _voltage(name: str) -> FieldSpec:
    # No mains phase is above twice its nominal voltage: such a value is a bad sensor or a bad scale factor.
    return FieldSpec(name, Kind.NUMBER, minimum=0.0, maximum=1000.0, max_times_nominal=2.0, nominal_key="voltage_v")


def _current(name: str) -> FieldSpec:
    return FieldSpec(name, Kind.NUMBER, minimum=0.0, maximum=100_000.0)


def _percent(name: str) -> FieldSpec:
    return FieldSpec(name, Kind.NUMBER, minimum=0.0, maximum=100.0)


def _fields(*specs: FieldSpec) -> dict[str, FieldSpec]:
    return {spec.name: spec for spec in specs}


FIELDS: dict[DeviceType, dict[str, FieldSpec]] = {
    DeviceType.PUMP: _fields(
        # Gauge pressure of a building's water supply: never negative, and no domestic system runs at 100 bar.
        FieldSpec("pressure_bar", Kind.NUMBER, required=True, minimum=0.0, maximum=100.0),
        FieldSpec("inlet_pressure_bar", Kind.NUMBER, minimum=0.0, maximum=100.0),
        FieldSpec("flow_m3h", Kind.NUMBER, minimum=0.0, maximum=10_000.0),
        FieldSpec("pump_running", Kind.BOOLEAN),
        FieldSpec("pump_id", Kind.STRING),
    ),
    DeviceType.POWER: _fields(
        _voltage("voltage_l1_v"),
        _voltage("voltage_l2_v"),
        _voltage("voltage_l3_v"),
        FieldSpec("frequency_hz", Kind.NUMBER, minimum=0.0, maximum=100.0),
        _current("current_l1_a"),
        _current("current_l2_a"),
        _current("current_l3_a"),
        FieldSpec("energy_kwh", Kind.NUMBER, minimum=0.0),
    ),
    DeviceType.ELEVATOR: _fields(
        FieldSpec("state", Kind.ENUM, required=True, choices=ELEVATOR_STATES),
        FieldSpec("floor", Kind.INTEGER, minimum=-20, maximum=300),
        FieldSpec("direction", Kind.ENUM, choices=("up", "down", "none")),
        FieldSpec("fault_code", Kind.STRING, nullable=True),
        FieldSpec("entrapment", Kind.BOOLEAN),
        FieldSpec("alarm_button", Kind.BOOLEAN),
        FieldSpec("trips", Kind.INTEGER, minimum=0),
    ),
    DeviceType.SMOKE: _fields(
        FieldSpec("state", Kind.ENUM, required=True, choices=SMOKE_STATES),
        _percent("obscuration_pct_per_m"),
        _percent("battery_pct"),
        _percent("contamination_pct"),
    ),
}

# At least one field of each group must be present.
REQUIRED_ANY: dict[DeviceType, tuple[str, ...]] = {
    DeviceType.POWER: ("voltage_l1_v", "voltage_l2_v", "voltage_l3_v"),
}

# Defaults used for plausibility bounds when a device has no `nominal` of its own.
DEFAULT_NOMINAL = {"voltage_v": 230.0}
