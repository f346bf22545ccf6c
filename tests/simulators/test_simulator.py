from __future__ import annotations

import threading

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from facmon.cmd.broker import Broker
from facmon.facility.config import FacilityConfig, load_config
from facmon.facility.registry import DeviceRegistry
from facmon.ingest.decode import Decoder
from facmon.simulators.devices import model_for
from facmon.simulators.publisher import Simulator
from facmon.simulators.scenarios import pressure_drop
from tests.conftest import EXAMPLE
from tests.waiting import eventually


def trace(seed: int) -> list[bytes]:
    registry = DeviceRegistry.from_config(load_config(EXAMPLE, env={}))
    models = [model_for(d, seed) for d in registry]
    return [orjson.dumps(m.sample(t)) for t in range(0, 600, 5) for m in models]


def test_same_seed_same_trace_byte_for_byte() -> None:
    assert trace(7) == trace(7)
    assert trace(7) != trace(8)


def test_every_simulated_payload_passes_ingest_validation() -> None:
    registry = DeviceRegistry.from_config(load_config(EXAMPLE, env={}))
    decoder = Decoder(registry, topic_prefix="facility", max_payload_bytes=262144, max_future_skew_ms=300_000)
    for model in (model_for(d, 3) for d in registry):
        for t in range(0, 3600, 60):
            topic = f"facility/{model.device.site}/{model.device.type}/{model.device.id}/telemetry"
            decoded = decoder.decode(topic, orjson.dumps(model.sample(t)), 1_795_000_000_000)
            assert decoded.rejects == [], decoded.rejects


def test_pressure_drop_scenario_takes_the_first_pump_down_and_back() -> None:
    registry = DeviceRegistry.from_config(load_config(EXAMPLE, env={}))
    [window] = pressure_drop(registry)
    assert window.device_id == "pump-1" and window.start < 60
    model = model_for(registry.get("pump-1"), 1)  # type: ignore[arg-type]
    model.faults = {"pressure_drop": window.params}
    assert model.sample(30)["pressure_bar"] < 1.5
    model.faults = {}
    assert model.sample(700)["pressure_bar"] > 3.5


def test_publishes_every_device_through_the_broker(mqtt_broker: Broker) -> None:
    config: FacilityConfig = load_config(EXAMPLE, env={"FACMON_MQTT__URL": mqtt_broker.url})
    seen: dict[str, int] = {}
    status: list[bytes] = []
    listener = mqtt.Client(CallbackAPIVersion.VERSION2)

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        if msg.topic.endswith("/status"):
            status.append(msg.payload)
        else:
            seen[msg.topic.split("/")[3]] = seen.get(msg.topic.split("/")[3], 0) + 1

    listener.on_message = on_message
    listener.connect(mqtt_broker.host, mqtt_broker.port)
    listener.subscribe("facility/#", qos=1)
    listener.loop_start()
    try:
        eventually(lambda: listener.is_connected())
        result = Simulator(config, rate=200).run(threading.Event(), duration=1.0)
        eventually(lambda: sum(seen.values()) == result.published, what="every published message received")
        assert set(seen) == {d.id for d in DeviceRegistry.from_config(config)}
        assert result.published >= 150 and result.rate > 100
        eventually(lambda: status[-1:] == [b"offline"], what="gateway status offline at the end")
        assert b"online" in status
    finally:
        listener.disconnect()
        listener.loop_stop()
