"""Device models: each gives the payload a device would send at a moment of simulated time.

A model carries the physical state of its device (a pump room's pressure and its vessel, a lift's trip, a
detector's ageing) and moves it forward to each sample's time, so that readings hang together from one sample
to the next. Activity follows the time of day (`daily_profile`): `start_hour` is the local time at t = 0.

Faults are set from outside in `faults` (name → parameters) while they last: a fault acts from the first sample
that names it until the last one that does. `FAULTS` lists each type's faults; parameters not
given take the defaults in each model's `FAULT_DEFAULTS`.

Deterministic: a model draws only from its own `random.Random`, seeded from the run's seed and the device id,
so the same seed and the same sequence of sample times give the same readings.
"""

from __future__ import annotations

import math
import random
import zlib
from dataclasses import dataclass
from typing import Any, ClassVar

from facmon.facility.model import Device, DeviceType

# How often each type reports, in simulated seconds.
INTERVALS = {DeviceType.PUMP: 5.0, DeviceType.POWER: 10.0, DeviceType.ELEVATOR: 5.0, DeviceType.SMOKE: 60.0}

DAY_S = 86_400.0


def rng_for(seed: int, device_id: str) -> random.Random:
    return random.Random(seed * 1_000_003 + zlib.crc32(device_id.encode()))


def daily_profile(hour: float) -> float:
    """How busy a residential building is at a local hour: 0 at night, 0.3 by day, 1 at the peaks.

    Peaks 06:30 to 09:00 and 18:00 to 22:00; every edge a smooth ramp, so demand never jumps.
    """
    h = hour % 24
    awake = _plateau(h, 6.0, 23.0, 1.0)
    peak = max(_plateau(h, 6.5, 9.0, 0.5), _plateau(h, 18.0, 22.0, 0.75))
    return min(1.0, 0.3 * awake + 0.7 * peak)


def _plateau(h: float, start: float, end: float, ramp: float) -> float:
    """1 between start and end, 0 well outside, with smoothstep ramps `ramp` hours wide centred on the edges."""
    return _smoothstep((h - start) / ramp + 0.5) * _smoothstep((end - h) / ramp + 0.5)


def _smoothstep(x: float) -> float:
    x = min(1.0, max(0.0, x))
    return x * x * (3 - 2 * x)


def _drift(x: float, dt: float, tau: float, sigma: float, rng: random.Random) -> float:
    """One step of a mean-reverting random walk around 0 (Ornstein-Uhlenbeck) with time constant `tau` and
    stationary spread `sigma`: exact for any step, so jittered sample times do not change its statistics."""
    a = math.exp(-dt / tau)
    return a * x + math.sqrt(1 - a * a) * sigma * rng.gauss(0.0, 1.0)


def _clamp(x: float, low: float, high: float) -> float:
    return min(high, max(low, x))


@dataclass(slots=True)
class Fault:
    start: float  # simulated time of the first sample that named it
    params: dict[str, Any]  # the defaults overlaid with what the scenario gave
    held: float | None = None  # a value the fault keeps, where it keeps one (a stuck sensor's reading)


class DeviceModel:
    """The payload a device sends at each sample time, with its faults; one subclass per device type."""

    # Fault name → default parameters. Every type knows `sensor_dropout`: the device sends nothing.
    FAULT_DEFAULTS: ClassVar[dict[str, dict[str, Any]]] = {"sensor_dropout": {}}

    def __init__(self, device: Device, rng: random.Random, *, start_hour: float = 0.0) -> None:
        self.device = device
        self.rng = rng
        self.start_hour = start_hour
        # Fault name → parameters, set from outside before each sample while the fault lasts.
        self.faults: dict[str, dict[str, Any]] = {}
        self._active: dict[str, Fault] = {}
        self._t: float | None = None

    def sample(self, t: float) -> dict[str, Any] | None:
        """The payload at simulated time `t` (seconds since the run's start); None when the device sends nothing."""
        if self._t is None:
            self._begin(t)
            self._t = t
        else:
            self._end_faults(self._t)
            if t > self._t:
                self._advance(self._t, t)
                self._t = t
        self._start_faults(t)
        payload = self._payload(t)
        return None if "sensor_dropout" in self._active else payload

    def hour(self, t: float) -> float:
        """Local time of day at simulated time `t`."""
        return (self.start_hour + t / 3600) % 24

    def _end_faults(self, t: float) -> None:
        """Faults no longer named end at `t`, the last sample that named them."""
        for name in [n for n in self._active if n not in self.faults]:
            del self._active[name]
            self._ended(name, t)

    def _start_faults(self, t: float) -> None:
        for name, given in self.faults.items():
            defaults = self.FAULT_DEFAULTS.get(name)
            if defaults is None:
                continue  # not a fault of this type; the scenario loader refuses such events
            params = {**defaults, **given}
            if name in self._active:
                self._active[name].params = params
            else:
                self._active[name] = fault = Fault(t, params)
                self._began(name, fault, t)

    # What subclasses fill in.
    def _begin(self, t: float) -> None:
        """Set up at the first sample."""

    def _advance(self, t0: float, t1: float) -> None:
        """Move the device's state from `t0` to `t1` under the faults named at both."""

    def _began(self, name: str, fault: Fault, t: float) -> None:
        """A fault has just begun."""

    def _ended(self, name: str, t: float) -> None:
        """A fault has just ended."""

    def _payload(self, t: float) -> dict[str, Any]:
        raise NotImplementedError


class PumpModel(DeviceModel):
    """A booster set holding the building's supply at its set point.

    By day the variable-speed pump runs all the time and holds the set point. At low demand (night) it raises
    the pressure to cut-out and stops; the pressure vessel then feeds the building until the pressure falls to
    cut-in and the pump starts again. A start is followed by at least MIN_CYCLE_S of running, so the pump
    never starts more than three times an hour.
    """

    FAULT_DEFAULTS: ClassVar[dict[str, dict[str, Any]]] = {
        **DeviceModel.FAULT_DEFAULTS,
        "pipe_burst": {"to_bar": 0.8, "fall_s": 20.0},  # fast fall, then a low plateau at high flow
        "pump_failure": {"decay_bar_per_min": 0.3, "floor_bar": 0.5},  # "running" but delivering nothing
        "over_pressure": {"to_bar": 6.5},  # a stuck valve
        "stuck_sensor": {},  # the reading frozen at its value when the fault began
        "short_cycling": {"period_s": 300.0},  # a start every period (a waterlogged vessel)
        "pressure_drop": {"to_bar": 1.2},  # the demo's first fault: pressure held at to_bar
    }
    STEP_S = 1.0  # the pressure moves in steps of at most this much simulated time
    BAND = 0.075  # cut-in and cut-out: set point ∓ 7.5 % (3.7 / 4.3 bar at 4.0)
    VESSEL_BAR_PER_M3 = 0.9  # pressure lost per m³ the vessel gives while the pump stands
    LOW_FLOW_M3H = 3.0  # below this demand the pump may stop
    MIN_CYCLE_S = 1260.0  # a start keeps the pump running this long: at most 3 starts an hour
    SETTLE_S = 8.0  # time constant of the speed controller
    MAX_FALL_BAR_S = 0.02  # the controller lowers pressure gently (1 bar takes 50 s)
    BURST_FLOW_M3H = 35.0
    NOISE_BAR = 0.02

    def __init__(self, device: Device, rng: random.Random, *, start_hour: float = 0.0) -> None:
        super().__init__(device, rng, start_hour=start_hour)
        self.setpoint = float(device.nominal.get("pressure_bar", 4.0))
        self.cut_in = self.setpoint * (1 - self.BAND)
        self.cut_out = self.setpoint * (1 + self.BAND)
        self.inlet = float(device.nominal.get("inlet_pressure_bar", 1.5))
        self.pressure = self.setpoint  # the true outlet pressure; the transmitter adds its noise
        self.running = True
        self._stopping = False  # raising the pressure to cut-out before a stop
        self._last_start = -math.inf
        self._demand_dev = rng.gauss(0.0, 0.1)  # the day's demand around the profile, relative

    def demand(self, t: float) -> float:
        """The building's water demand in m³/h: 2 at night to 15 at the peaks."""
        return (2.0 + 13.0 * daily_profile(self.hour(t))) * (1 + self._demand_dev)

    def _advance(self, t0: float, t1: float) -> None:
        now = t0
        while now < t1:
            dt = min(self.STEP_S, t1 - now)
            now += dt
            self._step(now, dt)
        self._demand_dev = _clamp(_drift(self._demand_dev, t1 - t0, 600.0, 0.1, self.rng), -0.3, 0.3)

    def _step(self, now: float, dt: float) -> None:
        active = self._active
        if "pressure_drop" in active:
            self._start(now)
            self.pressure = float(active["pressure_drop"].params["to_bar"])
        elif "pipe_burst" in active:
            fault = active["pipe_burst"]
            self._start(now)
            origin = self.pressure if fault.held is None else fault.held
            share = min(1.0, (now - fault.start) / max(float(fault.params["fall_s"]), 1.0))
            self.pressure = origin + (float(fault.params["to_bar"]) - origin) * share
        elif "pump_failure" in active:
            params = active["pump_failure"].params
            self._start(now)
            floor = float(params["floor_bar"])
            self.pressure = max(min(self.pressure, floor), self.pressure - float(params["decay_bar_per_min"]) * dt / 60)
        elif "over_pressure" in active:
            self._start(now)
            to = float(active["over_pressure"].params["to_bar"])
            self.pressure += (to - self.pressure) * (1 - math.exp(-dt / 15))
        elif "short_cycling" in active:
            self._short_cycle(now, active["short_cycling"])
        else:
            self._control(now, dt)

    def _control(self, now: float, dt: float) -> None:
        demand = self.demand(now)
        if not self.running:
            self.pressure -= self.VESSEL_BAR_PER_M3 * demand * dt / 3600
            if self.pressure <= self.cut_in:
                self._start(now)
            return
        if demand >= self.LOW_FLOW_M3H:
            self._stopping = False
        elif now - self._last_start >= self.MIN_CYCLE_S:
            self._stopping = True
        target = self.cut_out if self._stopping else self.setpoint
        self.pressure += max((target - self.pressure) * (1 - math.exp(-dt / self.SETTLE_S)), -self.MAX_FALL_BAR_S * dt)
        if self._stopping and self.pressure >= self.cut_out - 0.02:
            self.running = self._stopping = False

    def _short_cycle(self, now: float, fault: Fault) -> None:
        """Runs a third of each period from cut-in to cut-out, stands the rest while the pressure falls back."""
        period = max(float(fault.params["period_s"]), 15.0)
        on = period / 3
        phase = (now - fault.start) % period
        band = self.cut_out - self.cut_in
        if phase < on:
            self._start(now)
            self.pressure = self.cut_in + band * phase / on
        else:
            self.running = False
            self.pressure = self.cut_out - band * (phase - on) / (period - on)

    def _start(self, now: float) -> None:
        if not self.running:
            self.running = True
            self._last_start = now
        self._stopping = False

    def _began(self, name: str, fault: Fault, t: float) -> None:
        if name == "pipe_burst":
            fault.held = self.pressure  # where the fall starts from
        elif name == "pressure_drop":
            self._start(t)
            self.pressure = float(fault.params["to_bar"])

    def _payload(self, t: float) -> dict[str, Any]:
        rng = self.rng
        demand = self.demand(t)
        flow = demand
        if "pipe_burst" in self._active:
            fault = self._active["pipe_burst"]
            flow += self.BURST_FLOW_M3H * min(1.0, (t - fault.start) / max(float(fault.params["fall_s"]), 1.0))
        elif "pump_failure" in self._active:
            flow *= math.sqrt(max(self.pressure, 0.0) / self.setpoint) if self.setpoint > 0 else 0.0
        pressure = round(_clamp(self.pressure + rng.gauss(0.0, self.NOISE_BAR), 0.0, 100.0), 3)
        stuck = self._active.get("stuck_sensor")
        if stuck is not None:
            if stuck.held is None:
                stuck.held = pressure
            pressure = stuck.held
        # Mains pressure at the inlet sags a little when the whole district draws water.
        inlet = self.inlet * (1 - 0.1 * daily_profile(self.hour(t))) + rng.gauss(0.0, 0.02)
        return {
            "pressure_bar": pressure,
            "inlet_pressure_bar": round(_clamp(inlet, 0.0, 100.0), 3),
            "flow_m3h": round(max(0.0, flow * (1 + rng.gauss(0.0, 0.02))), 2),
            "pump_running": self.running,
        }


class PowerModel(DeviceModel):
    """A three-phase low-voltage panel: voltages near nominal that sag with the building's load, currents by
    load, 50 Hz, and the energy counter integrating the power drawn."""

    FAULT_DEFAULTS: ClassVar[dict[str, dict[str, Any]]] = {
        **DeviceModel.FAULT_DEFAULTS,
        "dip": {"depth_pct": 40.0, "phases": [1, 2, 3]},
        "swell": {"rise_pct": 15.0, "phases": [1, 2, 3]},
        "interruption": {},
        "phase_loss": {"phase": 2},
        "unbalance": {"pct": 5.0},
    }
    TAP = 0.01  # the transformer's tap sits 1 % high to make up for the drop under load
    DROP_AT_FULL_LOAD = 0.02
    POWER_FACTOR = 0.95
    UNBALANCE_SHAPE = (-1.0, 0.5, 0.5)  # one phase sags under a single-phase overload, the others rise

    def __init__(self, device: Device, rng: random.Random, *, start_hour: float = 0.0) -> None:
        super().__init__(device, rng, start_hour=start_hour)
        self.nominal = float(device.nominal.get("voltage_v", 230.0))
        self.rated_a = float(device.nominal.get("current_a", 400.0))
        self._offsets = [rng.uniform(-0.002, 0.002) for _ in range(3)]  # each phase's own small offset
        self._shares = [rng.uniform(0.95, 1.05) for _ in range(3)]  # how the load divides between phases
        self._grid = rng.gauss(0.0, 0.004)  # the supply's slow wander, relative
        self._load_dev = rng.gauss(0.0, 0.05)
        self._freq_dev = rng.gauss(0.0, 0.007)
        self.energy_kwh = 120_000.0 + rng.uniform(0, 5000)
        self._kw = 0.0  # power drawn since the last sample

    def load(self, t: float) -> float:
        """The share of the panel's rating drawn: 0.2 at night, 0.8 at the peaks."""
        return (0.2 + 0.6 * daily_profile(self.hour(t))) * (1 + self._load_dev)

    def _advance(self, t0: float, t1: float) -> None:
        dt, rng = t1 - t0, self.rng
        self.energy_kwh += self._kw * dt / 3600
        self._grid = _clamp(_drift(self._grid, dt, 1800.0, 0.004, rng), -0.01, 0.01)
        self._load_dev = _clamp(_drift(self._load_dev, dt, 900.0, 0.05, rng), -0.15, 0.15)
        self._freq_dev = _clamp(_drift(self._freq_dev, dt, 60.0, 0.007, rng), -0.02, 0.02)

    def _payload(self, t: float) -> dict[str, Any]:
        rng, active, nominal = self.rng, self._active, self.nominal
        load = self.load(t)
        normal = [
            nominal * (1 + self.TAP + self._grid + self._offsets[i] - self.DROP_AT_FULL_LOAD * load * self._shares[i])
            + rng.gauss(0.0, 0.25)
            for i in range(3)
        ]
        volts = list(normal)
        if "unbalance" in active:
            mean = sum(volts) / 3
            pct = float(active["unbalance"].params["pct"])
            volts = [mean * (1 + pct / 100 * s) for s in self.UNBALANCE_SHAPE]
        if "dip" in active:
            params = active["dip"].params
            for p in _phases(params["phases"]):
                volts[p - 1] *= 1 - float(params["depth_pct"]) / 100
        if "swell" in active:
            params = active["swell"].params
            for p in _phases(params["phases"]):
                volts[p - 1] *= 1 + float(params["rise_pct"]) / 100
        if "phase_loss" in active:
            for p in _phases(active["phase_loss"].params["phase"]):
                volts[p - 1] = rng.uniform(0.0, 2.0)
        if "interruption" in active:
            volts = [rng.uniform(0.0, 2.0) for _ in range(3)]
        # Below the decoder's bound of twice nominal, whatever a scenario asks for.
        volts = [_clamp(v, 0.0, 1.99 * nominal) for v in volts]
        # Loads draw current in proportion to their voltage; a phase without voltage draws none.
        amps = [
            max(0.0, (self.rated_a * load * self._shares[i] + rng.gauss(0.0, 1.0)) * volts[i] / normal[i])
            if volts[i] > 0.05 * nominal
            else 0.0
            for i in range(3)
        ]
        self._kw = sum(v * a for v, a in zip(volts, amps, strict=True)) * self.POWER_FACTOR / 1000
        out: dict[str, Any] = {}
        for i in range(3):
            out[f"voltage_l{i + 1}_v"] = round(volts[i], 1)
            out[f"current_l{i + 1}_a"] = round(amps[i], 1)
        out["frequency_hz"] = 0.0 if "interruption" in active else round(50.0 + self._freq_dev, 3)
        out["energy_kwh"] = round(self.energy_kwh, 1)
        return out


def _phases(given: Any) -> list[int]:
    """Phase numbers 1 to 3 from a scenario's `phases: [1, 3]` or `phase: 2`."""
    items = given if isinstance(given, list | tuple) else [given]
    return [int(p) for p in items if int(p) in (1, 2, 3)]


class ElevatorModel(DeviceModel):
    """A lift answering calls: idle, run to the caller's floor, doors, run to the destination, doors, idle.

    Calls come more often at the peaks; by day most trips start or end at the lobby (floor 1).
    """

    FAULT_DEFAULTS: ClassVar[dict[str, dict[str, Any]]] = {
        **DeviceModel.FAULT_DEFAULTS,
        "door_fault": {"fault_code": "DOOR"},
        "entrapment": {"alarm_button": True, "alarm_after_s": 20.0},  # stuck between floors, passengers inside
        "out_of_service": {},
        "inspection": {},  # a technician drives the car and tests its signals
    }
    HOLDING = ("entrapment", "door_fault", "out_of_service", "inspection")  # the first one present decides
    SECONDS_PER_FLOOR = 2.0
    START_STOP_S = 4.0
    DOORS_S = (6.0, 12.0)
    IDLE_S = (600.0, 10.0)  # mean wait for a call at night, at the peaks

    def __init__(self, device: Device, rng: random.Random, *, start_hour: float = 0.0) -> None:
        super().__init__(device, rng, start_hour=start_hour)
        self.floors = int(_clamp(float(device.nominal.get("floors", 20)), 2, 300))
        self.floor = rng.randint(1, self.floors)
        self.trips = rng.randint(10_000, 90_000)
        self.state = "idle"
        self._until = 0.0  # when the current state ends
        self._run: tuple[float, int, int] | None = None  # (start, from floor, to floor) while running
        self._plan: list[int] = []  # floors still to serve for the current call

    def _begin(self, t: float) -> None:
        self._until = t + self._idle_wait(t)

    def _held(self) -> str | None:
        return next((name for name in self.HOLDING if name in self._active), None)

    def _advance(self, t0: float, t1: float) -> None:
        if self._held():
            return
        while self._until <= t1:
            self._next(self._until)

    def _next(self, now: float) -> None:
        if self.state == "running" and self._run is not None:
            self.floor = self._run[2]
            self._run = None
            self._set("door_open", now + self.rng.uniform(*self.DOORS_S))
        elif self.state == "door_open" and self._plan:
            self._travel(now, self._plan.pop(0))
        elif self.state == "door_open":
            self._set("idle", now + self._idle_wait(now))
        else:
            origin, destination = self._call(now)
            self._plan = [destination]
            if origin == self.floor:
                self._set("door_open", now + self.rng.uniform(*self.DOORS_S))
            else:
                self._travel(now, origin)

    def _set(self, state: str, until: float) -> None:
        self.state, self._until = state, until

    def _travel(self, now: float, to: int) -> None:
        self.trips += 1
        self._run = (now, self.floor, to)
        self._set("running", now + self.START_STOP_S + self.SECONDS_PER_FLOOR * abs(to - self.floor))

    def _call(self, now: float) -> tuple[int, int]:
        rng = self.rng
        if rng.random() < 0.6:  # to the lobby in the morning, from it later in the day
            other = rng.randint(2, self.floors)
            return (other, 1) if self.hour(now) < 12 else (1, other)
        origin, destination = rng.sample(range(1, self.floors + 1), 2)
        return origin, destination

    def _idle_wait(self, now: float) -> float:
        night, peak = self.IDLE_S
        return self.rng.expovariate(1 / (night * (peak / night) ** daily_profile(self.hour(now))))

    def _floor_at(self, t: float) -> int:
        if self._run is None:
            return self.floor
        start, origin, to = self._run
        passed = int(max(0.0, t - start - self.START_STOP_S / 2) / self.SECONDS_PER_FLOOR)
        return origin + int(math.copysign(min(passed, abs(to - origin)), to - origin))

    def _began(self, name: str, fault: Fault, t: float) -> None:
        if name in self.HOLDING:
            # The car stops where it is (an entrapment: between this floor and the next); the call is lost.
            self.floor = self._floor_at(t)
            self._run, self._plan = None, []
            self.state = "idle"

    def _ended(self, name: str, t: float) -> None:
        if name in self.HOLDING and not self._held():
            self._set("idle", t + self._idle_wait(t))

    def _payload(self, t: float) -> dict[str, Any]:
        out: dict[str, Any] = {
            "state": self.state,
            "floor": self._floor_at(t),
            "direction": "none",
            "fault_code": None,
            "entrapment": False,
            "alarm_button": False,
            "trips": self.trips,
        }
        held = self._held()
        if held is None:
            if self._run is not None:
                out["direction"] = "up" if self._run[2] > self._run[1] else "down"
        elif held == "entrapment":
            fault = self._active[held]
            late = t - fault.start >= float(fault.params["alarm_after_s"])
            out |= {"state": "fault", "fault_code": "STUCK", "entrapment": True}
            out["alarm_button"] = bool(fault.params["alarm_button"]) and late
        elif held == "door_fault":
            out |= {"state": "fault", "fault_code": str(self._active[held].params["fault_code"])}
        elif held == "out_of_service":
            out["state"] = "out_of_service"
        else:
            out |= self._inspection()
        return out

    def _inspection(self) -> dict[str, Any]:
        """The technician moves the car a floor now and then and tests the entrapment and alarm signals."""
        rng = self.rng
        out: dict[str, Any] = {"state": "inspection"}
        if rng.random() < 0.1:
            step = rng.choice((-1, 1)) if 1 < self.floor < self.floors else 1 if self.floor == 1 else -1
            self.floor += step
            out |= {"floor": self.floor, "direction": "up" if step > 0 else "down"}
        out["entrapment"] = rng.random() < 0.05
        out["alarm_button"] = rng.random() < 0.05
        return out


class SmokeModel(DeviceModel):
    """An optical smoke detector: clean-air obscuration a little above zero, a battery running down slowly
    and a chamber gathering dust. A fault that sets a value holds it only while the fault lasts."""

    FAULT_DEFAULTS: ClassVar[dict[str, dict[str, Any]]] = {
        **DeviceModel.FAULT_DEFAULTS,
        "alarm": {"obscuration": 8.0},  # smoke: obscuration in %/m rises to this
        "fault": {},
        "test": {},
        "battery_low": {"to_pct": 15.0},
        "dirty_chamber": {"to_pct": 85.0},
    }
    BATTERY_PCT_PER_DAY = 0.05
    DUST_PCT_PER_DAY = 0.02
    SMOKE_TAU_S = 30.0

    def __init__(self, device: Device, rng: random.Random, *, start_hour: float = 0.0) -> None:
        super().__init__(device, rng, start_hour=start_hour)
        self.battery0 = rng.uniform(60, 100)
        self.contamination0 = rng.uniform(5, 40)
        self._noise = 0.0
        self._smoke = 0.0  # obscuration added by smoke in the chamber

    def _advance(self, t0: float, t1: float) -> None:
        dt = t1 - t0
        alarm = self._active.get("alarm")
        target = max(0.0, float(alarm.params["obscuration"]) - 0.2) if alarm else 0.0
        self._smoke += (target - self._smoke) * (1 - math.exp(-dt / self.SMOKE_TAU_S))
        self._noise = _drift(self._noise, dt, 600.0, 0.02, self.rng)

    def _payload(self, t: float) -> dict[str, Any]:
        active = self._active
        contamination = self.contamination0 + self.DUST_PCT_PER_DAY * t / DAY_S
        battery = self.battery0 - self.BATTERY_PCT_PER_DAY * t / DAY_S
        # Dust scatters light too: a dirtier chamber reads a little higher in clean air.
        clean_air = _clamp(0.12 + 0.002 * contamination + self._noise, 0.08, 0.35)
        state = next((s for s in ("alarm", "fault", "test") if s in active), "normal")
        if "battery_low" in active:
            battery = float(active["battery_low"].params["to_pct"])
        if "dirty_chamber" in active:
            contamination = float(active["dirty_chamber"].params["to_pct"])
        return {
            "state": state,
            "obscuration_pct_per_m": round(_clamp(clean_air + self._smoke + self.rng.gauss(0.0, 0.01), 0.0, 100.0), 3),
            "battery_pct": round(_clamp(battery, 0.0, 100.0), 1),
            "contamination_pct": round(_clamp(contamination, 0.0, 100.0), 1),
        }


MODELS: dict[DeviceType, type[DeviceModel]] = {
    DeviceType.PUMP: PumpModel,
    DeviceType.POWER: PowerModel,
    DeviceType.ELEVATOR: ElevatorModel,
    DeviceType.SMOKE: SmokeModel,
}

# The faults each type knows, for scenario files to be checked against.
FAULTS: dict[DeviceType, frozenset[str]] = {t: frozenset(m.FAULT_DEFAULTS) for t, m in MODELS.items()}


def model_for(device: Device, seed: int, start_hour: float = 0.0) -> DeviceModel:
    """The model of `device` for a run with `seed`, whose t = 0 is `start_hour` local time (0 to 24)."""
    return MODELS[device.type](device, rng_for(seed, device.id), start_hour=start_hour)
