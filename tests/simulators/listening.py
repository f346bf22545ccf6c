"""A subscriber for the simulator's tests: what arrives at the broker under a topic prefix, in order."""

from __future__ import annotations

import threading
import time
import uuid

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from facmon.cmd.broker import Broker
from tests.waiting import eventually

Received = tuple[str, bytes, int]  # topic, payload, when received (epoch ms)


class Listener:
    """Subscribes to everything under a prefix before the simulator starts and keeps what arrives, in order."""

    def __init__(self, broker: Broker, prefix: str) -> None:
        self.prefix = prefix
        self.messages: list[Received] = []
        subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-listener-{uuid.uuid4().hex[:8]}")
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_args: subscribed.set()
        self.client.on_connect = lambda client, *_args: client.subscribe(f"{prefix}/#", qos=1)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        eventually(subscribed.is_set, what="the listener's subscription")

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        # amqtt (the embedded broker) also hands subscribers the wills of earlier tests' gateways, whatever
        # their topic: keep to the prefix subscribed to.
        if msg.topic.startswith(f"{self.prefix}/"):
            self.messages.append((msg.topic, msg.payload, time.time_ns() // 1_000_000))

    def telemetry(self) -> list[Received]:
        return [m for m in self.messages if m[0].endswith("/telemetry")]

    def statuses(self, gateway: str) -> list[bytes]:
        """A gateway's statuses from its first `online` on.

        amqtt (the embedded broker) sends a client's will when the client id comes back after a clean
        disconnect, so an earlier test's gateways can put an `offline` before the first `online`.
        """
        found = [p for t, p, _ in self.messages if t.endswith(f"/gateway/{gateway}/status")]
        return found[found.index(b"online") :] if b"online" in found else found

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def readings(payload: bytes) -> list[dict]:
    data = orjson.loads(payload)
    return data if isinstance(data, list) else [data]
