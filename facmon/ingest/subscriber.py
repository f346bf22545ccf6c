"""The MQTT side of ingest: a persistent QoS 1 session whose messages are acknowledged only once stored."""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from facmon.config.mqtt import MqttConfig
from facmon.facility.topics import (
    gateway_status_filter,
    site_telemetry_filter,
    telemetry_filter,
)

log = logging.getLogger(__name__)


class Message(NamedTuple):
    # A named tuple rather than a dataclass: one is made per message on paho's thread, the hot path.
    topic: str
    payload: bytes
    mid: int
    qos: int
    received_ms: int
    # Which connection delivered it: a packet id means nothing on a later connection.
    connection: int = 0
    # In a cluster, the partition whose session delivered it (its acknowledgement goes back that way).
    partition: int | None = None


class MqttSubscriber:
    """Subscribes to every device's telemetry and every gateway's status.

    Telemetry goes to `handle` on paho's network thread and is acknowledged later through `ack`; a gateway
    status goes to `on_status(topic, payload)` and is acknowledged at once (the broker retains the latest).
    With `shared_group`, telemetry is subscribed as `$share/GROUP/…` so that the processes of a group split it.

    In a cluster, each partition has a subscriber of its own (`partition` and its `sites`): a persistent session
    whose client id is derived from the partition, subscribed to exactly its sites' topics, so that while no
    worker holds the partition the broker keeps its messages, and the next holder resumes the same session.
    """

    def __init__(
        self,
        config: MqttConfig,
        handle: Callable[[Message], None],
        *,
        on_status: Callable[[str, bytes], None] | None = None,
        client_id: str | None = None,
        partition: int | None = None,
        sites: Sequence[str] = (),
        status_only: bool = False,
    ) -> None:
        self._config = config
        self._handle = handle
        self._on_status = on_status
        self.partition = partition
        prefix = config.topic_prefix
        # Only the gateways' status, on a clean session: what the broker retains is all there is to know.
        self._status_only = status_only
        if status_only:
            self._filters = [gateway_status_filter(prefix)]
        elif partition is None:
            telemetry = telemetry_filter(prefix)
            self._filters = [f"$share/{config.shared_group}/{telemetry}" if config.shared_group else telemetry]
            if on_status is not None:
                self._filters.append(gateway_status_filter(prefix))
        else:
            # Telemetry only: the gateways' status reaches every worker through its own status-only subscriber.
            self._filters = [site_telemetry_filter(prefix, site) for site in sites]
            client_id = client_id or partition_client_id(config.client_id, partition)
        self._connection = 0
        self._connected = threading.Event()
        self._stopping = False
        self._subscribe_mid: int | None = None
        self._v5 = config.protocol == "5"
        self.client_id = client_id or config.client_id
        if self._v5:
            self._client = mqtt.Client(
                CallbackAPIVersion.VERSION2,
                client_id=self.client_id,
                protocol=mqtt.MQTTv5,
                manual_ack=True,
            )
        else:
            self._client = mqtt.Client(
                CallbackAPIVersion.VERSION2,
                client_id=self.client_id,
                # The broker keeps our subscription and queues messages while we are away.
                clean_session=status_only,
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

    @property
    def filters(self) -> list[str]:
        return list(self._filters)

    def start(self) -> None:
        """Connect in the background; paho reconnects with backoff whenever the connection drops. After `stop`,
        starts again on the same session (a worker that becomes the leader once more)."""
        self._stopping = False
        keepalive = int(self._config.keepalive.total_seconds())
        if self._v5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = 0 if self._status_only else int(self._config.session_expiry.total_seconds())
            # Clean start off: the broker keeps our subscription and queues messages while we are away.
            self._client.connect_async(
                self._config.host, self._config.port, keepalive, clean_start=self._status_only, properties=props
            )
        else:
            self._client.connect_async(self._config.host, self._config.port, keepalive)
        self._client.loop_start()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def stop(self) -> None:
        self._stopping = True
        self._client.disconnect()
        self._client.loop_stop()
        # paho leaves two sockets open here: the one its thread opened while still connecting when the disconnect
        # found none yet, and the pair that wakes its thread, which each `loop_start` makes anew. A subscriber
        # stopped and started again (a partition lost and regained) would leak them each time.
        self._client._reset_sockets()
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
        _, self._subscribe_mid = client.subscribe([(f, 1) for f in self._filters])
        log.info(
            "connected to MQTT broker %s:%s (MQTT %s, session present: %s)",
            self._config.host,
            self._config.port,
            self._config.protocol,
            flags.session_present,
        )

    def _on_subscribe(self, _client: mqtt.Client, _userdata: Any, mid: int, reasons: Any, _props: Any) -> None:
        # Ready only once the broker has confirmed the subscription: until then a new session misses messages.
        if mid != self._subscribe_mid:
            return
        refused = [f for f, reason in zip(self._filters, reasons, strict=False) if reason.is_failure]
        if refused:
            log.error("MQTT broker refused the subscription to %s: %s", ", ".join(refused), reasons)
            return
        self._connected.set()
        log.info("subscribed to %s", ", ".join(self._filters))

    def _on_connect_fail(self, _client: mqtt.Client, _userdata: Any) -> None:
        # paho retries with a backoff of up to 30 s, so this says so at most about twice a minute.
        log.warning("cannot reach MQTT broker %s:%s; retrying", self._config.host, self._config.port)

    def _on_disconnect(self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if self._connected.is_set() and not self._stopping:
            log.warning("disconnected from MQTT broker: %s; reconnecting", reason)
        self._connected.clear()

    def _on_message(self, client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        topic = msg.topic
        payload = bytes(msg.payload)  # already bytes from the wire; typed bytes | bytearray
        if topic.endswith("/status"):
            if msg.qos:
                client.ack(msg.mid, msg.qos)
            if self._on_status is not None:
                self._on_status(topic, payload)
            return
        self._handle(
            Message(topic, payload, msg.mid, msg.qos, time.time_ns() // 1_000_000, self._connection, self.partition)
        )


def partition_client_id(client_id: str, partition: int) -> str:
    """The MQTT client id of a partition's session: the same on every worker, so the next holder resumes it."""
    return f"{client_id}-p{partition}"
