"""Publishes simulated telemetry for every configured device to a broker, as gateways would."""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from facmon.facility.config import FacilityConfig, MqttConfig
from facmon.facility.registry import DeviceRegistry
from facmon.facility.topics import gateway_status_topic, telemetry_topic
from facmon.simulators.devices import INTERVALS, DeviceModel, model_for
from facmon.simulators.scenarios import SCENARIOS

log = logging.getLogger(__name__)


@dataclass
class SimulationResult:
    published: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.published / self.seconds if self.seconds > 0 else 0.0


class Simulator:
    """Each device reports at its interval of simulated time; `speed` compresses time, `rate` overrides intervals."""

    def __init__(
        self,
        config: FacilityConfig,
        *,
        mqtt_config: MqttConfig | None = None,
        scenario: str = "quiet",
        speed: float = 1.0,
        rate: float | None = None,
        seed: int = 1,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {scenario!r}: one of {', '.join(SCENARIOS)}")
        if speed <= 0:
            raise ValueError("speed must be above 0")
        self._mqtt = mqtt_config or config.mqtt
        self._registry = DeviceRegistry.from_config(config)
        self._models = [model_for(d, seed) for d in self._registry]
        self._faults = SCENARIOS[scenario](self._registry)
        self._speed = speed
        self._rate = rate
        self._clock = clock
        self.published = 0

    def run(self, stop: threading.Event, duration: float | None = None) -> SimulationResult:
        """Publish until `stop` is set or `duration` real seconds have passed."""
        clients = self._connect()
        started = time.monotonic()
        wall_start = self._clock()
        # (next real time offset, index of the model)
        queue = [(self._interval(m) * (i / max(len(self._models), 1)), i) for i, m in enumerate(self._models)]
        heapq.heapify(queue)
        try:
            while queue and not stop.is_set():
                due, index = heapq.heappop(queue)
                elapsed = time.monotonic() - started
                if duration is not None and due > duration:
                    break
                if due > elapsed and stop.wait(due - elapsed):
                    break
                model = self._models[index]
                sim_t = due * self._speed
                self._apply_faults(model, sim_t)
                payload = model.sample(sim_t)
                payload["ts"] = int((wall_start + due) * 1000)
                device = model.device
                topic = telemetry_topic(self._mqtt.topic_prefix, device.site, device.type, device.id)
                clients[device.site].publish(topic, orjson.dumps(payload), qos=1)
                self.published += 1
                heapq.heappush(queue, (due + self._interval(model), index))
        finally:
            for site, client in clients.items():
                status = gateway_status_topic(self._mqtt.topic_prefix, site, f"sim-{site}")
                with suppress(RuntimeError, ValueError):  # the broker is gone already: the will says offline
                    client.publish(status, b"offline", qos=1, retain=True).wait_for_publish(5)
                client.disconnect()
                client.loop_stop()
        return SimulationResult(self.published, time.monotonic() - started)

    def _interval(self, model: DeviceModel) -> float:
        if self._rate:
            return len(self._models) / self._rate
        return INTERVALS[model.device.type] / self._speed

    def _apply_faults(self, model: DeviceModel, sim_t: float) -> None:
        model.faults = {
            w.fault: w.params for w in self._faults if w.device_id == model.device.id and w.start <= sim_t < w.end
        }

    def _connect(self) -> dict[str, mqtt.Client]:
        clients: dict[str, mqtt.Client] = {}
        for site in sorted({d.site for d in self._registry}):
            client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"facmon-sim-{site}")
            if self._mqtt.username:
                password = self._mqtt.password.get_secret_value() if self._mqtt.password else None
                client.username_pw_set(self._mqtt.username, password)
            if self._mqtt.tls:
                client.tls_set()
            status = gateway_status_topic(self._mqtt.topic_prefix, site, f"sim-{site}")
            client.will_set(status, b"offline", qos=1, retain=True)
            client.max_queued_messages_set(0)
            client.connect(self._mqtt.host, self._mqtt.port, 30)
            client.loop_start()
            client.publish(status, b"online", qos=1, retain=True)
            clients[site] = client
        return clients
