"""The simulator through a real broker: what a subscriber sees of the gateways, in real time, fast and by rate."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from facmon.cmd.broker import Broker
from facmon.config.facility import FacilityConfig
from facmon.config.loader import load_config
from facmon.config.registry import DeviceRegistry
from facmon.ingest.decode import Decoder
from facmon.simulators.errors import ScenarioError
from facmon.simulators.publisher import Simulator
from facmon.simulators.scenario import Scenario, load_scenario
from tests.conftest import EXAMPLE
from tests.simulators.listening import Listener, readings
from tests.waiting import eventually


@pytest.fixture
def prefix() -> str:
    """A topic prefix of the test's own: retained statuses of other tests stay out of its way."""
    return f"sim-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def config(mqtt_broker: Broker, prefix: str) -> FacilityConfig:
    return load_config(EXAMPLE, env={"FACMON_MQTT__URL": mqtt_broker.url, "FACMON_MQTT__TOPIC_PREFIX": prefix})


@pytest.fixture
def listener(mqtt_broker: Broker, prefix: str) -> Iterator[Listener]:
    listening = Listener(mqtt_broker, prefix)
    yield listening
    listening.close()


def scenario_file(tmp_path: Path, text: str) -> Scenario:
    path = tmp_path / "scenario.yaml"
    path.write_text(text, encoding="utf-8")
    return load_scenario(str(path))


def without_ts(payload: bytes) -> bytes:
    """The payload with its time stamps taken out: they follow the wall clock, the rest follows the seed."""
    data = orjson.loads(payload)
    if isinstance(data, list):
        return orjson.dumps([{k: v for k, v in item.items() if k != "ts"} for item in data])
    return orjson.dumps({k: v for k, v in data.items() if k != "ts"})


def test_real_time_publishes_each_devices_telemetry_and_the_gateway_statuses(
    config: FacilityConfig, listener: Listener
) -> None:
    registry = DeviceRegistry.from_config(config)
    decoder = Decoder(
        registry, topic_prefix=config.mqtt.topic_prefix, max_payload_bytes=256 * 1024, max_future_skew_ms=300_000
    )
    # Two real seconds at 60x: two simulated minutes, so that the smoke detectors (every 60 s) report too.
    result = Simulator(config, speed=60).run(threading.Event(), duration=2)

    statuses = ("gw-riverside-1", "gw-riverside-2")
    eventually(lambda: all(listener.statuses(g)[-1:] == [b"offline"] for g in statuses), what="both gateways offline")
    eventually(lambda: len(listener.telemetry()) + 2 == result.published, what="every published message")
    for gateway in statuses:
        assert listener.statuses(gateway) == [b"online", b"offline"]
    seen = set()
    for topic, payload, received_ms in listener.telemetry():
        decoded = decoder.decode(topic, payload, received_ms)
        assert decoded.rejects == [], decoded.rejects
        seen.update(r.device_id for r in decoded.readings)
    assert seen == {d.id for d in registry}


def test_an_outage_drops_the_connection_and_the_broker_publishes_the_will(
    config: FacilityConfig, listener: Listener, tmp_path: Path
) -> None:
    scenario = scenario_file(
        tmp_path,
        """
name: short-outage
description: The pump room's gateway loses power for 20 s.
duration: 60s
events:
  - {at: 15s, gateway: gw-riverside-1, fault: outage, for: 20s}
""",
    )
    result = Simulator(config, scenario=scenario, speed=20).run(threading.Event())

    eventually(lambda: listener.statuses("gw-riverside-1")[-1:] == [b"offline"], what="the final offline")
    # The middle `offline` is the broker's: the simulator itself says offline only when it stops.
    assert listener.statuses("gw-riverside-1") == [b"online", b"offline", b"online", b"offline"]
    assert listener.statuses("gw-riverside-2") == [b"online", b"offline"]
    eventually(lambda: len(listener.telemetry()) + 3 == result.published, what="every published message")
    pump = [payload for topic, payload, _ in listener.telemetry() if topic.endswith("/pump-1/telemetry")]
    backlog = [p for p in pump if p.startswith(b"[")]
    assert backlog, "the backlog came as an array"
    seqs = [r["seq"] for p in pump for r in readings(p)]
    assert seqs == list(range(len(seqs))), "nothing lost, nothing out of order"


def test_fast_mode_sends_a_whole_scenario_at_once_with_no_time_stamp_ahead(
    config: FacilityConfig, listener: Listener, tmp_path: Path
) -> None:
    scenario = scenario_file(
        tmp_path,
        """
name: ten-minutes
description: Ten minutes with a burst pipe in the middle.
duration: 10m
events:
  - {at: 4m, device: pump-1, fault: pipe_burst, for: 2m}
""",
    )
    before_ms = time.time_ns() // 1_000_000
    result = Simulator(config, scenario=scenario, fast=True).run(threading.Event())

    eventually(lambda: len(listener.telemetry()) + 2 == result.published, what="every published message")
    stamps = [(r["ts"], received) for _, p, received in listener.telemetry() for r in readings(p)]
    assert all(ts <= received for ts, received in stamps), "a time stamp ahead of its arrival"
    assert min(ts for ts, _ in stamps) < before_ms - 590_000, "the trace covers the ten minutes before now"
    smoke = [p for t, p, _ in listener.telemetry() if t.endswith("/smoke-A-01/telemetry")]
    assert 8 <= len(smoke) <= 12  # one a minute


def run_fast(config: FacilityConfig, broker: Broker, seed: int) -> list[tuple[str, bytes]]:
    listening = Listener(broker, config.mqtt.topic_prefix)
    try:
        result = Simulator(config, scenario=load_scenario("pressure-drop"), fast=True, seed=seed).run(threading.Event())
        eventually(lambda: len(listening.telemetry()) + 2 == result.published, what="every published message")
        return sorted((t, without_ts(p)) for t, p, _ in listening.telemetry())
    finally:
        listening.close()


def test_the_same_seed_sends_the_same_messages(config: FacilityConfig, mqtt_broker: Broker) -> None:
    first = run_fast(config, mqtt_broker, seed=7)
    assert run_fast(config, mqtt_broker, seed=7) == first
    assert run_fast(config, mqtt_broker, seed=8) != first


def test_in_real_time_the_same_seed_sends_the_same_messages_in_the_same_order(
    config: FacilityConfig, mqtt_broker: Broker
) -> None:
    def per_topic(seed: int) -> dict[str, list[bytes]]:
        listening = Listener(mqtt_broker, config.mqtt.topic_prefix)
        try:
            result = Simulator(config, speed=100, seed=seed).run(threading.Event(), duration=1)
            eventually(lambda: len(listening.telemetry()) + 2 == result.published, what="every published message")
            # One client per gateway: each topic's messages keep their order; topics interleave as they may.
            out: dict[str, list[bytes]] = {}
            for topic, payload, _ in listening.telemetry():
                out.setdefault(topic, []).append(without_ts(payload))
            return out
        finally:
            listening.close()

    assert per_topic(3) == per_topic(3)


def test_rate_mode_sends_readings_round_robin(config: FacilityConfig, listener: Listener) -> None:
    result = Simulator(config, rate=200).run(threading.Event(), duration=1.0)

    eventually(lambda: len(listener.telemetry()) == result.published, what="every published message")
    counts: dict[str, int] = {}
    for topic, _, _ in listener.telemetry():
        counts[topic.split("/")[3]] = counts.get(topic.split("/")[3], 0) + 1
    assert set(counts) == {d.id for d in DeviceRegistry.from_config(config)}
    assert max(counts.values()) - min(counts.values()) <= 2
    eventually(lambda: listener.statuses("gw-riverside-1")[-1:] == [b"offline"], what="offline at the end")


def test_a_scenario_the_facility_cannot_play_is_refused_before_connecting(tmp_path: Path) -> None:
    config = load_config(EXAMPLE, env={"FACMON_MQTT__URL": "mqtt://127.0.0.1:1"})
    scenario = scenario_file(
        tmp_path,
        """
name: elsewhere
duration: 1m
events:
  - {at: 10s, device: pump-9, fault: pipe_burst}
""",
    )
    with pytest.raises(ScenarioError, match=r"^scenario elsewhere: events\.0: no device 'pump-9'"):
        Simulator(config, scenario=scenario)
