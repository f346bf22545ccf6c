"""The MQTT side of ingest: a persistent QoS 1 session whose messages are acknowledged only once stored."""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from facmon.facility.config import MqttConfig
from facmon.facility.topics import telemetry_filter

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    mid: int
    qos: int
    received_ms: int
    # Which connection delivered it: a packet id means nothing on a later connection.
    connection: int = 0


class MqttSubscriber:
    """Subscribes to every device's telemetry and hands each message to `handle` on paho's network thread."""

    def __init__(self, config: MqttConfig, handle: Callable[[Message], None], *, client_id: str | None = None) -> None:
        self._config = config
        self._handle = handle
        self._filter = telemetry_filter(config.topic_prefix)
        self._connection = 0
        self._connected = threading.Event()
        self._stopping = False
        self._subscribe_mid: int | None = None
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or config.client_id,
            clean_session=False,  # the broker keeps our subscription and queues messages while we are away
            protocol=mqtt.MQTTv311,
            manual_ack=True,
        )
        if config.username:
            password = config.password.get_secret_value() if config.password else None
            self._client.username_pw_set(config.username, password)
        if config.tls:
            self._client.tls_set(cert_reqs=ssl.CERT_REQUIRED)
        self._client.reconnect_delay_set(min_delay=1, max_delay=30)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_disconnect = self._on_disconnect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_message = self._on_message

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def start(self) -> None:
        """Connect in the background; paho reconnects with backoff whenever the connection drops."""
        self._client.connect_async(self._config.host, self._config.port, int(self._config.keepalive.total_seconds()))
        self._client.loop_start()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def stop(self) -> None:
        self._stopping = True
        self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()

    def ack(self, message: Message) -> None:
        """Acknowledge a stored message, unless it came over a connection that has since been replaced."""
        if message.qos and message.connection == self._connection:
            self._client.ack(message.mid, message.qos)

    def _on_connect(self, client: mqtt.Client, _userdata: Any, flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            log.error("MQTT broker %s:%s refused the connection: %s", self._config.host, self._config.port, reason)
            return
        self._connection += 1
        _, self._subscribe_mid = client.subscribe(self._filter, qos=1)
        log.info(
            "connected to MQTT broker %s:%s (session present: %s)",
            self._config.host,
            self._config.port,
            flags.session_present,
        )

    def _on_subscribe(self, _client: mqtt.Client, _userdata: Any, mid: int, reasons: Any, _props: Any) -> None:
        # Ready only once the broker has confirmed the subscription: until then a new session misses messages.
        if mid != self._subscribe_mid:
            return
        if any(reason.is_failure for reason in reasons):
            log.error("MQTT broker refused the subscription to %s: %s", self._filter, reasons)
            return
        self._connected.set()
        log.info("subscribed to %s", self._filter)

    def _on_connect_fail(self, _client: mqtt.Client, _userdata: Any) -> None:
        # paho retries with a backoff of up to 30 s, so this says so at most about twice a minute.
        log.warning("cannot reach MQTT broker %s:%s; retrying", self._config.host, self._config.port)

    def _on_disconnect(self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if self._connected.is_set() and not self._stopping:
            log.warning("disconnected from MQTT broker: %s; reconnecting", reason)
        self._connected.clear()

    def _on_message(self, _client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self._handle(
            Message(msg.topic, bytes(msg.payload), msg.mid, msg.qos, time.time_ns() // 1_000_000, self._connection)
        )
