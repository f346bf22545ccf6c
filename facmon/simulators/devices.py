"""Device models: each gives the payload a device would send at a moment of simulated time.

Deterministic: a model draws only from its own `random.Random`, seeded from the run's seed and the device id.
"""

from __future__ import annotations

import math
import random
import zlib
from dataclasses import dataclass, field
from typing import Any

from facmon.facility.model import Device, DeviceType

# How often each type reports, in simulated seconds.
INTERVALS = {DeviceType.PUMP: 5.0, DeviceType.POWER: 10.0, DeviceType.ELEVATOR: 5.0, DeviceType.SMOKE: 60.0}


def rng_for(seed: int, device_id: str) -> random.Random:
    return random.Random(seed * 1_000_003 + zlib.crc32(device_id.encode()))


@dataclass
class DeviceModel:
    device: Device
    rng: random.Random
    # Fault name → parameters, set by the scenario while the fault lasts.
    faults: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Models with state of their own set it up here."""

    def sample(self, t: float) -> dict[str, Any]:
        raise NotImplementedError


class PumpModel(DeviceModel):
    def sample(self, t: float) -> dict[str, Any]:
        setpoint = self.device.nominal.get("pressure_bar", 4.0)
        drop = self.faults.get("pressure_drop")
        pressure = drop.get("to_bar", 1.2) if drop else setpoint
        pressure += self.rng.gauss(0, 0.03)
        return {
            "pressure_bar": round(max(pressure, 0.0), 3),
            "inlet_pressure_bar": round(1.5 + self.rng.gauss(0, 0.02), 3),
            "flow_m3h": round(max(0.0, 12 + 4 * math.sin(t / 3600) + self.rng.gauss(0, 0.5)), 2),
            "pump_running": True,
        }


class PowerModel(DeviceModel):
    def __post_init__(self) -> None:
        self.energy = 120_000.0 + self.rng.uniform(0, 5000)

    def sample(self, t: float) -> dict[str, Any]:
        nominal = self.device.nominal.get("voltage_v", 230.0)
        load = 0.5 + 0.2 * math.sin(t / 7200)
        self.energy += load * 0.1
        out: dict[str, Any] = {}
        for phase in (1, 2, 3):
            out[f"voltage_l{phase}_v"] = round(nominal * (1.0 - 0.02 * load) + self.rng.gauss(0, 0.6), 1)
            out[f"current_l{phase}_a"] = round(400 * load + self.rng.gauss(0, 5), 1)
        out["frequency_hz"] = round(50 + self.rng.gauss(0, 0.02), 3)
        out["energy_kwh"] = round(self.energy, 1)
        return out


class ElevatorModel(DeviceModel):
    def __post_init__(self) -> None:
        self.floor = self.rng.randint(1, 20)
        self.trips = self.rng.randint(10_000, 90_000)

    def sample(self, t: float) -> dict[str, Any]:
        roll = self.rng.random()
        if roll < 0.5:
            return {"state": "idle", "floor": self.floor, "direction": "none", "entrapment": False, "trips": self.trips}
        if roll < 0.7:
            return {
                "state": "door_open",
                "floor": self.floor,
                "direction": "none",
                "entrapment": False,
                "trips": self.trips,
            }
        target = self.rng.randint(1, 20)
        direction = "up" if target > self.floor else "down" if target < self.floor else "none"
        self.floor = target
        self.trips += 1
        return {
            "state": "running",
            "floor": self.floor,
            "direction": direction,
            "entrapment": False,
            "trips": self.trips,
        }


class SmokeModel(DeviceModel):
    def __post_init__(self) -> None:
        self.battery = self.rng.uniform(70, 100)
        self.contamination = self.rng.uniform(5, 30)

    def sample(self, t: float) -> dict[str, Any]:
        return {
            "state": "normal",
            "obscuration_pct_per_m": round(abs(self.rng.gauss(0.2, 0.05)), 3),
            "battery_pct": round(self.battery - t / 86400 * 0.05, 1),
            "contamination_pct": round(self.contamination + t / 86400 * 0.02, 1),
        }


MODELS: dict[DeviceType, type[DeviceModel]] = {
    DeviceType.PUMP: PumpModel,
    DeviceType.POWER: PowerModel,
    DeviceType.ELEVATOR: ElevatorModel,
    DeviceType.SMOKE: SmokeModel,
}


def model_for(device: Device, seed: int) -> DeviceModel:
    return MODELS[device.type](device, rng_for(seed, device.id))
