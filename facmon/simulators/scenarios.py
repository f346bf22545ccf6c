"""Built-in scenarios: which fault strikes which device, from when until when (simulated seconds)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from facmon.facility.model import DeviceType
from facmon.facility.registry import DeviceRegistry


@dataclass(frozen=True, slots=True)
class FaultWindow:
    device_id: str
    fault: str
    start: float
    end: float
    params: dict[str, Any]


def quiet(_registry: DeviceRegistry) -> list[FaultWindow]:
    """A normal day: no faults."""
    return []


def pressure_drop(registry: DeviceRegistry) -> list[FaultWindow]:
    """The first pump's supply pressure falls to 1.2 bar 20 s in, for ten minutes."""
    pump = next((d for d in registry if d.type is DeviceType.PUMP), None)
    if pump is None:
        return []
    return [FaultWindow(pump.id, "pressure_drop", 20.0, 620.0, {"to_bar": 1.2})]


SCENARIOS = {"quiet": quiet, "pressure-drop": pressure_drop}
