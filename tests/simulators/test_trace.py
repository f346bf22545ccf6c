"""The library API: traces without a broker, deterministic, with the gateways' habits."""

from __future__ import annotations

import hashlib
from itertools import pairwise
from pathlib import Path

import orjson
import pytest

from facmon.config.facility import FacilityConfig
from facmon.config.loader import load_config
from facmon.config.registry import DeviceRegistry
from facmon.ingest.decode import Decoder
from facmon.simulators.errors import ScenarioError
from facmon.simulators.scenario import load_scenario, parse_scenario
from facmon.simulators.trace import MALFORMED, Behaviour, Link, Publish, gateways_of, trace
from tests.conftest import EXAMPLE

START_MS = 1_790_000_000_000  # 2026-09-21T14:13:20Z


@pytest.fixture(scope="module")
def config() -> FacilityConfig:
    return load_config(EXAMPLE)


def digest(config: FacilityConfig, seed: int, scenario: str = "gateway-outage-backlog") -> str:
    h = hashlib.sha256()
    for item in trace(config, load_scenario(scenario), start_ms=START_MS, seed=seed):
        h.update(repr(item).encode())
    return h.hexdigest()


def test_same_seed_same_trace_byte_for_byte(config: FacilityConfig) -> None:
    assert digest(config, 7) == digest(config, 7)
    assert digest(config, 7) != digest(config, 8)


def test_every_reading_passes_validation_and_each_device_reports(config: FacilityConfig) -> None:
    registry = DeviceRegistry.from_config(config)
    decoder = Decoder(registry, topic_prefix="facility", max_payload_bytes=256 * 1024, max_future_skew_ms=300_000)
    seen: set[str] = set()
    for item in trace(config, start_ms=START_MS, duration_s=600):
        if isinstance(item, Publish) and item.topic.endswith("/telemetry"):
            decoded = decoder.decode(item.topic, item.payload, START_MS + 3_600_000)
            assert decoded.rejects == []
            seen.update(r.device_id for r in decoded.readings)
    assert seen == {d.id for d in registry}


def test_gateways_serve_their_device_types(config: FacilityConfig) -> None:
    by_id = {g.id: {d.type for d in g.devices} for g in gateways_of(config)}
    assert by_id == {"gw-riverside-1": {"pump", "power"}, "gw-riverside-2": {"elevator", "smoke"}}


def test_an_outage_goes_silent_then_flushes_its_backlog_in_order(config: FacilityConfig) -> None:
    items = list(trace(config, load_scenario("gateway-outage-backlog"), start_ms=START_MS))
    links = [(i.at_ms - START_MS, i.online) for i in items if isinstance(i, Link) and i.gateway == "gw-riverside-1"]
    assert links == [(0, True), (600_000, False), (1_320_000, True)]
    pump = [i for i in items if isinstance(i, Publish) and i.topic == "facility/riverside/pump/pump-1/telemetry"]
    assert not [p for p in pump if 600_000 <= p.at_ms - START_MS < 1_320_000]  # nothing sent while away
    arrays = [orjson.loads(p.payload) for p in pump if p.at_ms - START_MS == 1_320_000]
    assert arrays and all(isinstance(chunk, list) for chunk in arrays)
    flushed = [r for chunk in arrays for r in chunk]
    assert len(flushed) >= 12 * 60 // 6  # a reading every 5 s give or take jitter, for 12 minutes
    assert [r["seq"] for r in flushed] == sorted(r["seq"] for r in flushed)
    assert all(START_MS + 600_000 <= r["ts"] < START_MS + 1_320_000 for r in flushed)
    # The other gateway went on as usual.
    lift = [i for i in items if isinstance(i, Publish) and "lift-A1" in i.topic]
    assert any(600_000 <= p.at_ms - START_MS < 1_320_000 for p in lift)


def test_clock_skew_duplicates_and_malformed(config: FacilityConfig) -> None:
    text = """
name: habits
duration: 20m
events:
  - {at: 0s, gateway: gw-riverside-2, fault: clock_skew, seconds: 120}
  - {at: 0s, gateway: gw-riverside-2, fault: duplicates, share: 0.5}
  - {at: 0s, gateway: gw-riverside-1, fault: malformed, share: 0.5}
"""
    items = [i for i in trace(config, parse_scenario(text, "habits"), start_ms=START_MS) if isinstance(i, Publish)]
    lifts = [i for i in items if "/elevator/" in i.topic]
    assert all(orjson.loads(i.payload)["ts"] == i.at_ms + 120_000 for i in lifts)
    payloads = [(i.topic, i.payload) for i in lifts]
    assert len(payloads) - len(set(payloads)) > len(payloads) / 5  # about a third are resends
    pumps = [i.payload for i in items if "/pump/" in i.topic]
    bad = [p for p in pumps if p in MALFORMED]
    assert len(pumps) / 4 < len(bad) < len(pumps) * 3 / 4


def test_speed_compresses_time_stamps(config: FacilityConfig) -> None:
    items = [
        i
        for i in trace(config, start_ms=START_MS, duration_s=3600, speed=60, devices=["pump-1"])
        if isinstance(i, Publish) and "/telemetry" in i.topic
    ]
    ts = [orjson.loads(i.payload)["ts"] for i in items]
    assert max(ts) - START_MS <= 60_000  # an hour of the pump in a minute of time stamps
    assert 600 < len(items) < 840  # still a reading every 5 simulated seconds


def test_behaviour_jitter_is_bounded(config: FacilityConfig) -> None:
    items = [
        i
        for i in trace(config, start_ms=START_MS, duration_s=600, devices=["smoke-A-01"], behaviour=Behaviour(0.1))
        if isinstance(i, Publish) and "/telemetry" in i.topic
    ]
    gaps = [b.at_ms - a.at_ms for a, b in pairwise(items)]
    assert gaps and all(54_000 <= g <= 66_000 for g in gaps)


def test_scenario_errors_are_one_line_and_name_the_place(config: FacilityConfig, tmp_path: Path) -> None:
    registry = DeviceRegistry.from_config(config)
    gateways = {g.id for g in gateways_of(config)}
    with pytest.raises(ScenarioError, match=r"^s: events.0: name either a device or a gateway"):
        parse_scenario("name: x\nduration: 1m\nevents: [{at: 1s, fault: alarm}]", "s")
    with pytest.raises(ScenarioError, match="write start as a quoted local time"):
        parse_scenario("name: x\nduration: 1m\nstart: 2:30\n", "s")
    bad_fault = parse_scenario("name: x\nduration: 1m\nevents: [{at: 1s, device: pump-1, fault: alarm}]", "s")
    with pytest.raises(ScenarioError, match="pump devices have no fault 'alarm'"):
        bad_fault.check(registry, gateways)
    with pytest.raises(ScenarioError, match="no scenario 'nope'"):
        load_scenario("nope")
    for name in ("pipe-burst-night", "alarm-flood", "quiet-day"):
        load_scenario(name).check(registry, gateways)
