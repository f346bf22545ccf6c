"""Device models: the same readings for the same seed, a normal day that passes ingest and raises no alarm of the
example facility, and each fault as the pump room, the panel, the lift and the detector would show it."""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from facmon.config.loader import load_config
from facmon.config.registry import DeviceRegistry
from facmon.facility.model import Reading
from facmon.ingest.decode import Decoder
from facmon.rules.conditions import RuleSet
from facmon.rules.engine import ConditionChange, EngineState, evaluate, tick
from facmon.simulators.devices import FAULTS, INTERVALS, MODELS, DeviceModel, daily_profile, model_for
from tests.conftest import EXAMPLE

CONFIG = load_config(EXAMPLE, env={})
REGISTRY = DeviceRegistry.from_config(CONFIG)
T0_MS = 1_795_000_000_000
DAY = 86_400.0
ONE_OF_EACH = ("pump-1", "panel-1", "lift-A1", "smoke-A-01")

Samples = list[tuple[float, dict[str, Any] | None]]
# (from s, until s, fault, parameters)
Window = tuple[float, float, str, dict[str, Any]]


def model(device_id: str, seed: int = 1, start_hour: float = 0.0) -> DeviceModel:
    device = REGISTRY.get(device_id)
    assert device is not None
    return model_for(device, seed, start_hour=start_hour)


def run(m: DeviceModel, seconds: float, faults: Sequence[Window] = (), jitter_seed: int = 99) -> Samples:
    """Sample at the device's interval ± 10 % (from a random source of its own), with faults set as scenarios do."""
    jitter = random.Random(jitter_seed)
    interval = INTERVALS[m.device.type]
    out: Samples = []
    t = jitter.uniform(0, interval)
    while t < seconds:
        m.faults = {name: params for start, end, name, params in faults if start <= t < end}
        out.append((t, m.sample(t)))
        t += interval * (1 + jitter.uniform(-0.1, 0.1))
    return out


def between(samples: Samples, start: float, end: float) -> list[dict[str, Any]]:
    return [s for t, s in samples if start <= t < end and s is not None]


def values(samples: Samples, name: str, start: float = 0.0, end: float = 1e12) -> list[Any]:
    return [s[name] for s in between(samples, start, end)]


def largest_fall(samples: Samples, within: float = 30.0) -> float:
    points = [(t, s["pressure_bar"]) for t, s in samples if s is not None]
    return max(
        (p - q for i, (t, p) in enumerate(points) for u, q in points[i + 1 : i + 10] if u - t <= within), default=0.0
    )


def most_starts_per_hour(samples: Samples) -> int:
    running = [(t, s["pump_running"]) for t, s in samples if s is not None]
    starts = [t for (_, before), (t, now) in itertools.pairwise(running) if now and not before]
    return max((sum(1 for u in starts if t - 3600 < u <= t) for t in starts), default=0)


def unbalance(sample: dict[str, Any]) -> float:
    phases = [sample[f"voltage_l{i}_v"] for i in (1, 2, 3)]
    mean = sum(phases) / 3
    return float(max(abs(v - mean) for v in phases) / mean * 100)


def decode(device_id: str, samples: Iterable[tuple[float, dict[str, Any] | None]]) -> list[Reading]:
    device = REGISTRY.get(device_id)
    assert device is not None
    decoder = Decoder(REGISTRY, topic_prefix="facility", max_payload_bytes=262144, max_future_skew_ms=300_000)
    topic = f"facility/{device.site}/{device.type}/{device.id}/telemetry"
    readings = []
    for t, sample in samples:
        if sample is None:
            continue
        ts = T0_MS + round(t * 1000)
        decoded = decoder.decode(topic, orjson.dumps({**sample, "ts": ts}), ts)
        assert decoded.rejects == [], decoded.rejects
        readings += decoded.readings
    return readings


# --- determinism -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("device_id", ONE_OF_EACH)
def test_the_same_seed_gives_the_same_samples_and_another_seed_others(device_id: str) -> None:
    def samples(seed: int) -> Samples:
        return run(model(device_id, seed, start_hour=7.0), 2 * 3600)

    assert samples(5) == samples(5)
    assert samples(5) != samples(6)


def test_model_for_keeps_its_old_call_and_starts_at_midnight() -> None:
    device = REGISTRY.get("pump-1")
    assert device is not None
    assert model_for(device, 3).start_hour == 0.0
    assert set(FAULTS) == set(MODELS)


# --- a normal day ------------------------------------------------------------------------------------------------


def test_the_daily_profile_is_quiet_at_night_busy_at_the_peaks_and_smooth() -> None:
    assert daily_profile(3.0) < 0.01 and daily_profile(0.0) < 0.01
    assert daily_profile(7.75) > 0.95 and daily_profile(20.0) > 0.95
    assert 0.25 < daily_profile(14.0) < 0.35
    minutes = [daily_profile(m / 60) for m in range(24 * 60 + 1)]
    assert all(0.0 <= p <= 1.0 for p in minutes)
    assert max(abs(a - b) for a, b in itertools.pairwise(minutes)) < 0.05
    assert daily_profile(25.0) == daily_profile(1.0)


@pytest.mark.parametrize("start_hour", [0.0, 14.0])
def test_a_normal_day_passes_ingest_and_raises_no_alarm_of_the_example(start_hour: float) -> None:
    rules = RuleSet.compile(CONFIG.rules, REGISTRY)
    readings = [
        decode(d, run(model(d, seed=2, start_hour=start_hour), DAY, jitter_seed=i)) for i, d in enumerate(ONE_OF_EACH)
    ]
    state = EngineState()
    raised = []
    next_tick = T0_MS + 60_000
    for reading in heapq.merge(*readings, key=lambda r: r.ts_ms):
        while next_tick <= reading.ts_ms:
            state, events = tick(rules, state, datetime.fromtimestamp(next_tick / 1000, UTC))
            raised += [e for e in events if e.device_id in ONE_OF_EACH and e.kind is ConditionChange.RAISED]
            next_tick += 60_000
        now = datetime.fromtimestamp(reading.ts_ms / 1000, UTC)
        state, events = evaluate(rules, state, reading, now)
        raised += [e for e in events if e.kind is ConditionChange.RAISED]
    assert raised == []


@pytest.mark.parametrize("start_hour", [0.0, 14.0])
@pytest.mark.parametrize("seed", [1, 2])
def test_a_normal_pump_room_day_keeps_inside_the_examples_limits(start_hour: float, seed: int) -> None:
    m = model("pump-2", seed, start_hour)
    day = run(m, DAY, jitter_seed=seed)
    pressures = values(day, "pressure_bar")
    assert len(pressures) == len(day)  # a device without faults never drops out
    assert min(pressures) >= 3.06 and max(pressures) <= 5.9
    assert largest_fall(day) < 1.0
    assert 0 < most_starts_per_hour(day) <= 4
    assert sum(values(day, "pump_running")) > 0.7 * len(day)  # running most of the time
    flows = values(day, "flow_m3h")
    assert min(flows) >= 0 and max(flows) > 12  # the peaks
    assert all(1.0 < p < 2.0 for p in values(day, "inlet_pressure_bar"))


def test_the_pump_stands_at_night_and_runs_through_the_day() -> None:
    day = run(model("pump-1", start_hour=0.0), DAY)
    night = values(day, "pump_running", 0, 5 * 3600)
    assert 0.2 < sum(night) / len(night) < 0.9  # cycling on the vessel
    assert all(values(day, "pump_running", 10 * 3600, 16 * 3600))
    night_flow = values(day, "flow_m3h", 1 * 3600, 4 * 3600)
    peak_flow = values(day, "flow_m3h", 7 * 3600, 8.5 * 3600)
    assert sum(night_flow) / len(night_flow) < 3 < 10 < sum(peak_flow) / len(peak_flow)


@pytest.mark.parametrize("start_hour", [0.0, 14.0])
def test_a_normal_day_elsewhere_keeps_inside_the_examples_limits(start_hour: float) -> None:
    for panel in ("panel-1", "panel-2"):
        day = between(run(model(panel, 3, start_hour), DAY), 0, DAY)
        volts = [s[f"voltage_l{i}_v"] for s in day for i in (1, 2, 3)]
        assert min(volts) >= 230 * 0.97 and max(volts) <= 230 * 1.03
        assert max(unbalance(s) for s in day) < 1.0
        assert all(49.98 <= s["frequency_hz"] <= 50.02 for s in day)
        energy = [s["energy_kwh"] for s in day]
        assert energy == sorted(energy) and energy[-1] - energy[0] > 500
    for lift in ("lift-A1", "lift-B2"):
        day = between(run(model(lift, 3, start_hour), DAY), 0, DAY)
        assert {s["state"] for s in day} == {"idle", "running", "door_open"}
        assert all(1 <= s["floor"] <= 20 and s["fault_code"] is None for s in day)
        assert not any(s["entrapment"] or s["alarm_button"] for s in day)
        trips = [s["trips"] for s in day]
        assert trips == sorted(trips) and trips[-1] - trips[0] > 100
        assert {s["direction"] for s in day if s["state"] == "running"} == {"up", "down"}
        assert {s["direction"] for s in day if s["state"] != "running"} == {"none"}
    for detector in ("smoke-A-01", "smoke-B-10"):
        day = between(run(model(detector, 3, start_hour), DAY), 0, DAY)
        assert {s["state"] for s in day} == {"normal"}
        assert all(0.05 < s["obscuration_pct_per_m"] < 0.4 for s in day)
        assert all(s["battery_pct"] > 25 and s["contamination_pct"] < 75 for s in day)
        assert day[-1]["battery_pct"] <= day[0]["battery_pct"]


def test_lifts_are_busier_at_the_rush_hours_than_at_night() -> None:
    day = run(model("lift-A2", 4, start_hour=0.0), DAY)

    def trips(start_h: float, end_h: float) -> int:
        counts = values(day, "trips", start_h * 3600, end_h * 3600)
        return int(counts[-1] - counts[0])

    assert trips(7, 8.5) > 3 * trips(1, 2.5)


def test_a_lift_moves_a_floor_every_few_seconds() -> None:
    day = run(model("lift-A1", 4, start_hour=8.0), 3600)
    floors = [s["floor"] for s in between(day, 0, 3600)]
    steps = [abs(b - a) for a, b in itertools.pairwise(floors)]
    assert max(steps) <= 3 and sum(steps) > 50


# --- every fault -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("device_id", "fault"), [(d.id, f) for d in map(REGISTRY.get, ONE_OF_EACH) if d for f in sorted(FAULTS[d.type])]
)
def test_every_fault_gives_payloads_that_pass_ingest_and_ends(device_id: str, fault: str) -> None:
    m = model(device_id, 6, start_hour=3.0)
    samples = run(m, 3600, [(600, 1800, fault, {})])
    decode(device_id, samples)
    assert all(s is not None for t, s in samples if t >= 1800)


def pump_with(
    fault: str, params: dict[str, Any], start_hour: float = 3.0, seconds: float = 3600, until: float = 2400
) -> Samples:
    """A pump, at night unless said otherwise: the fault from 10 min to `until`."""
    return run(model("pump-1", 7, start_hour), seconds, [(600, until, fault, params)])


def test_pipe_burst_collapses_the_pressure_within_seconds_and_stays_low_at_high_flow() -> None:
    samples = pump_with("pipe_burst", {})
    assert largest_fall(between_samples(samples, 550, 700)) >= 1.0
    plateau = values(samples, "pressure_bar", 640, 2400)
    assert all(abs(p - 0.8) < 0.1 for p in plateau)
    assert min(values(samples, "flow_m3h", 640, 2400)) > 2 * max(values(samples, "flow_m3h", 0, 600))
    assert min(values(samples, "pressure_bar", 2500, 3600)) > 3.5  # isolated and repaired: back to normal


def between_samples(samples: Samples, start: float, end: float) -> Samples:
    return [(t, s) for t, s in samples if start <= t < end]


def test_pipe_burst_takes_its_parameters() -> None:
    samples = pump_with("pipe_burst", {"to_bar": 1.5, "fall_s": 10})
    assert all(abs(p - 1.5) < 0.1 for p in values(samples, "pressure_bar", 620, 2400))


def test_a_failed_pump_says_it_runs_while_the_pressure_decays_too_slowly_for_a_burst() -> None:
    samples = pump_with("pump_failure", {}, start_hour=14.0)
    assert all(values(samples, "pump_running", 600, 2400))
    assert largest_fall(samples) < 1.0
    assert min(values(samples, "pressure_bar", 600, 600 + 5 * 60)) < 3.0
    assert all(p > 0.4 for p in values(samples, "pressure_bar", 600, 2400))
    assert abs(values(samples, "pressure_bar", 2000, 2400)[-1] - 0.5) < 0.1  # the floor


def test_over_pressure_climbs_above_six_bar_within_a_minute() -> None:
    samples = pump_with("over_pressure", {})
    assert min(values(samples, "pressure_bar", 670, 2400)) > 6.0
    assert max(values(samples, "pressure_bar", 670, 2400)) < 6.6
    assert largest_fall(samples) < 1.0  # the valve freed: the pressure comes down gently, not like a burst


def test_a_stuck_sensor_repeats_its_last_reading_while_the_rest_moves_on() -> None:
    samples = pump_with("stuck_sensor", {}, start_hour=7.0)
    stuck = between(samples, 600, 2400)
    assert len({s["pressure_bar"] for s in stuck}) == 1
    assert len({s["flow_m3h"] for s in stuck}) > 10
    assert len(set(values(samples, "pressure_bar", 2400, 3600))) > 10


def test_sensor_dropout_sends_nothing_while_it_lasts() -> None:
    samples = pump_with("sensor_dropout", {})
    assert all(s is None for t, s in samples if 600 <= t < 2400)
    assert all(s is not None for t, s in samples if not 600 <= t < 2400)


def test_short_cycling_starts_the_pump_every_period_within_the_band() -> None:
    samples = pump_with("short_cycling", {}, start_hour=1.0, seconds=3 * 3600, until=4800)
    cycling = between_samples(samples, 600, 4800)
    assert most_starts_per_hour(cycling) >= 11  # every 5 minutes
    pressures = values(cycling, "pressure_bar", 700)
    assert 3.6 < min(pressures) < 3.8 and 4.2 < max(pressures) < 4.4
    assert largest_fall(cycling) < 1.0
    assert most_starts_per_hour(between_samples(samples, 4800, 3 * 3600)) <= 4
    faster = pump_with("short_cycling", {"period_s": 120}, start_hour=12.0, seconds=5400, until=4800)
    assert most_starts_per_hour(between_samples(faster, 600, 4800)) >= 25


def test_pressure_drop_holds_the_pressure_at_its_level_at_once() -> None:
    m = model("pump-1")
    m.faults = {"pressure_drop": {"to_bar": 1.2}}
    first = m.sample(30)
    assert first is not None and abs(first["pressure_bar"] - 1.2) < 0.1
    m.faults = {}
    later = m.sample(700)
    assert later is not None and later["pressure_bar"] > 3.5


def panel_with(fault: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """A panel's samples while the fault lasts."""
    return between(run(model("panel-1", 8, 10.0), 1800, [(600, 1200, fault, params)]), 600, 1200)


def phase(samples: list[dict[str, Any]], n: int) -> list[float]:
    return [s[f"voltage_l{n}_v"] for s in samples]


def test_a_dip_lowers_the_phases_it_names_by_its_depth() -> None:
    everywhere = panel_with("dip", {})
    assert all(230 * 0.57 < v < 230 * 0.63 for n in (1, 2, 3) for v in phase(everywhere, n))
    one = panel_with("dip", {"depth_pct": 30, "phases": [2]})
    assert all(230 * 0.67 < v < 230 * 0.73 for v in phase(one, 2))
    assert all(230 * 0.97 < v < 230 * 1.03 for n in (1, 3) for v in phase(one, n))


def test_a_swell_raises_the_voltage() -> None:
    samples = panel_with("swell", {"rise_pct": 12})
    assert all(230 * 1.09 < v < 230 * 1.15 for n in (1, 2, 3) for v in phase(samples, n))


def test_an_interruption_leaves_no_voltage_and_no_current() -> None:
    samples = panel_with("interruption", {})
    assert all(v <= 2.0 for n in (1, 2, 3) for v in phase(samples, n))
    assert all(s[f"current_l{n}_a"] == 0 for s in samples for n in (1, 2, 3))
    assert len({s["energy_kwh"] for s in samples}) <= 2  # the meter stands


def test_a_lost_phase_reads_zero_and_the_others_stay() -> None:
    samples = panel_with("phase_loss", {"phase": 3})
    assert all(v <= 2.0 for v in phase(samples, 3))
    assert all(230 * 0.97 < v < 230 * 1.03 for n in (1, 2) for v in phase(samples, n))


def test_unbalance_spreads_the_phases_by_about_its_percentage() -> None:
    assert all(4.5 < unbalance(s) < 5.5 for s in panel_with("unbalance", {}))
    assert all(2.5 < unbalance(s) < 3.5 for s in panel_with("unbalance", {"pct": 3}))


def lift_with(fault: str, params: dict[str, Any]) -> Samples:
    return run(model("lift-A1", 9, 8.0), 1800, [(600, 1200, fault, params)])


def test_a_door_fault_puts_the_lift_in_fault_with_its_code_and_it_recovers() -> None:
    samples = lift_with("door_fault", {})
    during = between(samples, 600, 1200)
    assert {(s["state"], s["fault_code"]) for s in during} == {("fault", "DOOR")}
    assert len({s["floor"] for s in during}) == 1
    after = between(samples, 1200, 1800)
    assert {s["fault_code"] for s in after} == {None} and "running" in {s["state"] for s in after}
    assert between(samples, 1200, 1800)[-1]["trips"] > during[-1]["trips"]
    assert {s["fault_code"] for s in between(lift_with("door_fault", {"fault_code": "D-17"}), 600, 1200)} == {"D-17"}


def test_an_entrapment_stops_the_car_and_the_alarm_button_follows() -> None:
    samples = lift_with("entrapment", {})
    during = between_samples(samples, 600, 1200)
    start = during[0][0]
    assert all(s is not None and s["state"] == "fault" and s["fault_code"] == "STUCK" for _, s in during)
    assert all(s is not None and s["entrapment"] for _, s in during)
    assert all(s is not None and s["alarm_button"] is (t - start >= 20) for t, s in during)
    assert not any(s["entrapment"] or s["alarm_button"] for s in between(samples, 1200, 1800))
    quiet = between(lift_with("entrapment", {"alarm_button": False}), 600, 1200)
    assert not any(s["alarm_button"] for s in quiet)


def test_a_lift_out_of_service_or_in_inspection_says_so() -> None:
    assert {s["state"] for s in between(lift_with("out_of_service", {}), 600, 1200)} == {"out_of_service"}
    inspection = between(lift_with("inspection", {}), 600, 1200)
    assert {s["state"] for s in inspection} == {"inspection"}
    assert any(s["entrapment"] for s in inspection) and any(s["alarm_button"] for s in inspection)
    assert all(1 <= s["floor"] <= 20 for s in inspection)


def detector_with(fault: str, params: dict[str, Any]) -> Samples:
    return run(model("smoke-B-04", 10, 21.0), 3600, [(600, 1800, fault, params)])


def test_smoke_puts_the_detector_in_alarm_with_obscuration_rising_and_clearing() -> None:
    samples = detector_with("alarm", {})
    during = between(samples, 600, 1800)
    assert {s["state"] for s in during} == {"alarm"}
    obscuration = [s["obscuration_pct_per_m"] for s in during]
    assert obscuration[0] < 0.5 and obscuration[1] > 4 and abs(obscuration[-1] - 8.0) < 0.3
    assert values(samples, "obscuration_pct_per_m", 2400)[0] < 0.5
    assert {s["state"] for s in between(samples, 1800, 3600)} == {"normal"}
    light = between(detector_with("alarm", {"obscuration": 3.0}), 900, 1800)
    assert all(2.7 < s["obscuration_pct_per_m"] < 3.3 for s in light)


@pytest.mark.parametrize("fault", ["fault", "test"])
def test_a_detector_fault_or_test_shows_in_its_state(fault: str) -> None:
    samples = detector_with(fault, {})
    assert {s["state"] for s in between(samples, 600, 1800)} == {fault}
    assert {s["state"] for s in between(samples, 1800, 3600)} == {"normal"}


def test_a_low_battery_and_a_dirty_chamber_read_their_values() -> None:
    battery = detector_with("battery_low", {})
    assert set(values(battery, "battery_pct", 600, 1800)) == {15.0}
    assert min(values(battery, "battery_pct", 1800)) > 25
    assert set(values(detector_with("dirty_chamber", {"to_pct": 90}), "contamination_pct", 600, 1800)) == {90.0}
    assert set(values(detector_with("dirty_chamber", {}), "contamination_pct", 600, 1800)) == {85.0}
