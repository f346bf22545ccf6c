"""A gateway for the tests: publishes through the real broker and waits for the broker's acknowledgement."""

from __future__ import annotations

import time
import uuid
import weakref
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from facmon.cmd.broker import Broker
from facmon.cmd.service import Service
from facmon.facility.clock import Clock
from facmon.ingest.subscriber import Message


class Gateway:
    """Stamps each object payload with `ts` the way gateways do, one millisecond apart at least."""

    def __init__(self, broker: Broker, site: str = "riverside") -> None:
        self.site = site
        self._last_ts = 0
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-gateway-{uuid.uuid4().hex[:8]}")
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def publish(self, device_type: str, device_id: str, payload: Any) -> None:
        if isinstance(payload, dict) and "ts" not in payload:
            self._last_ts = max(time.time_ns() // 1_000_000, self._last_ts + 1)
            payload = {**payload, "ts": self._last_ts}
        raw = payload if isinstance(payload, bytes) else orjson.dumps(payload)
        topic = f"facility/{self.site}/{device_type}/{device_id}/telemetry"
        self.client.publish(topic, raw, qos=1).wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


_last_fed: weakref.WeakKeyDictionary[Service, dict[str, int]] = weakref.WeakKeyDictionary()


def feed(service: Service, clock: Clock, device_type: str, device_id: str, payload: Any) -> None:
    """Hand a message to the service's pipeline as the subscriber would, and process it at the clock's time.

    An object without `ts` is stamped with the clock's time, a millisecond after the device's last reading at
    least, as a gateway would: two readings of a device at the same ts are one reading sent twice.
    """
    if isinstance(payload, dict) and "ts" not in payload:
        last = _last_fed.setdefault(service, {})
        ts = max(int(clock.now().timestamp() * 1000), last.get(device_id, 0) + 1)
        last[device_id] = ts
        payload = {**payload, "ts": ts}
    raw = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    topic = f"facility/riverside/{device_type}/{device_id}/telemetry"
    service.pipeline.process([Message(topic, raw, 1, 0, int(clock.now().timestamp() * 1000))])
