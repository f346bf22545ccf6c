"""Publishing simulated telemetry to a broker: one MQTT client per gateway, connected as real gateways are.

Three ways to pace it:

- real time (the default): a trace (facmon.simulators.trace) starting now, each item sent when the wall clock
  reaches its `at_ms`; `speed` compresses simulated time, time stamps included.
- fast: the whole trace as fast as the broker takes it, ending now, so that no time stamp is in the future.
- rate: load rather than a facility's day: the device models' readings round robin over the devices at a total
  rate, paced in batches per tick (0 = as fast as possible); a scenario's device faults apply, its gateway
  faults do not.

Gateways follow the trace's `Link` items: a lost connection is a socket closed without DISCONNECT, so that the
broker publishes the gateway's will (`offline`, retained); a connection that comes back is a new session.
"""

from __future__ import annotations

import logging
import math
import socket
import threading
import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import SecretStr

from facmon.config.facility import FacilityConfig
from facmon.config.mqtt import MqttConfig
from facmon.config.registry import DeviceRegistry
from facmon.facility.topics import gateway_status_topic, telemetry_topic
from facmon.simulators.devices import DeviceModel, model_for
from facmon.simulators.errors import GatewayConnectionError
from facmon.simulators.scenario import Scenario
from facmon.simulators.trace import Behaviour, Link, Publish, SimGateway, gateways_of, trace

log = logging.getLogger(__name__)

# Unacknowledged publishes a gateway may have before the simulator waits for the broker: bounds the memory of
# paho's queue when the broker is slower than the simulator.
MAX_OUTSTANDING = 1000
MAX_INFLIGHT = 100  # QoS 1 publishes on the wire per client before paho queues the rest
TICK = 0.01  # seconds between batches in rate mode
CONNECT_TIMEOUT = 10.0
CLOSE_TIMEOUT = 5.0
NORMAL = Behaviour()  # gateways without a scenario's faults: jitter, no resends, no malformed messages


@dataclass(frozen=True, slots=True)
class SimulationResult:
    published: int  # messages the broker acknowledged, without the simulator's own closing statuses
    seconds: float
    rate: float  # published per second


class _Session:
    """One gateway's MQTT session: a client with its will, and its publishes counted until acknowledged."""

    def __init__(
        self,
        gateway: SimGateway,
        settings: MqttConfig,
        prefix: str,
        acks: threading.Condition,
        password: SecretStr | None = None,
    ) -> None:
        self.gateway = gateway
        self.status_topic = gateway_status_topic(prefix, gateway.site, gateway.id)
        self.handed = 0  # publishes given to paho
        self.counted = 0  # of which from the trace or the models, not the session's own statuses
        self.acked = 0
        self._acks = acks
        self._url = settings.url
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"facmon-sim-{gateway.id}")
        if password is not None:
            # The gateway's own broker account, as `facmon mosquitto-config` writes it: it may publish here.
            client.username_pw_set(gateway.id, password.get_secret_value())
        elif settings.username:
            secret = settings.password.get_secret_value() if settings.password else None
            client.username_pw_set(settings.username, secret)
        if settings.tls:
            client.tls_set()
        client.will_set(self.status_topic, b"offline", qos=1, retain=True)
        client.max_queued_messages_set(0)
        client.max_inflight_messages_set(MAX_INFLIGHT)
        client.on_publish = self._on_publish
        self.client = client
        self._keepalive = max(5, int(settings.keepalive.total_seconds()))
        self._host, self._port = settings.host, settings.port

    def open(self) -> None:
        """Connect and wait for the broker's CONNACK; GatewayConnectionError when it does not come or says no."""
        answered = threading.Event()
        refused: list[str] = []

        def on_connect(_c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
            if reason.is_failure:
                refused.append(str(reason))
            answered.set()

        self.client.on_connect = on_connect
        where = f"gateway {self.gateway.id} cannot connect to {self._url}"
        try:
            self.client.connect(self._host, self._port, self._keepalive)
        except OSError as exc:
            raise GatewayConnectionError(f"{where}: {exc.strerror or exc}") from None
        self.client.loop_start()
        if not answered.wait(CONNECT_TIMEOUT) or refused:
            self.client.disconnect()
            self.client.loop_stop()
            reason = refused[0] if refused else f"no answer within {CONNECT_TIMEOUT:g} s"
            raise GatewayConnectionError(f"{where}: {reason}")

    def publish(self, topic: str, payload: bytes, retain: bool = False, *, counted: bool = True) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain)
        self.handed += 1
        if counted:
            self.counted += 1

    @property
    def outstanding(self) -> int:
        return self.handed - self.acked

    def wait_for_acks(self, below: int, timeout: float) -> bool:
        with self._acks:
            return self._acks.wait_for(lambda: self.outstanding <= below, timeout)

    def drop(self) -> threading.Thread:
        """Lose the connection as a gateway losing power would: no DISCONNECT, so the broker sends the will.

        What was sent before is acknowledged first, so that a run's messages do not depend on timing. Returns
        the thread that stops the client's network loop (it may take a second to notice).
        """
        self.wait_for_acks(0, CLOSE_TIMEOUT)
        sock = self.client.socket()
        if isinstance(sock, socket.socket):  # ssl.SSLSocket too
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        stopper = threading.Thread(target=self.client.loop_stop, name=f"facmon-sim-drop-{self.gateway.id}")
        stopper.start()
        return stopper

    def close(self) -> None:
        """Say `offline` (retained) and disconnect cleanly."""
        self.wait_for_acks(0, CLOSE_TIMEOUT)
        info = self.client.publish(self.status_topic, b"offline", qos=1, retain=True)
        self.handed += 1
        with suppress(RuntimeError, ValueError):  # the broker is gone already: the will says offline
            info.wait_for_publish(CLOSE_TIMEOUT)
        self.client.disconnect()
        self.client.loop_stop()

    @property
    def published(self) -> int:
        """Counted publishes the broker acknowledged (those not acknowledged were the last ones sent)."""
        return max(0, self.counted - self.outstanding)

    def _on_publish(self, _c: mqtt.Client, _u: Any, _mid: int, _reason: Any, _p: Any) -> None:
        with self._acks:
            self.acked += 1
            self._acks.notify_all()


class Simulator:
    """Publishes a facility's simulated telemetry, each gateway with its own MQTT client (`facmon-sim-{id}`)."""

    def __init__(
        self,
        config: FacilityConfig,
        *,
        scenario: Scenario | None = None,
        speed: float = 1.0,
        seed: int = 1,
        rate: float | None = None,
        fast: bool = False,
        behaviour: Behaviour = NORMAL,
        mqtt_config: MqttConfig | None = None,
        devices: Sequence[str] | None = None,
    ) -> None:
        """`rate`: total messages per second in rate mode (0 = as fast as possible); None for the trace.
        `mqtt_config`: the broker and credentials to use instead of `config.mqtt`; topics keep the config's
        prefix. `devices`: only these device ids.

        Raises ScenarioError when the scenario names devices, gateways or faults the facility does not have.
        """
        if speed <= 0:
            raise ValueError("speed must be above 0")
        if rate is not None and rate < 0:
            raise ValueError("rate must be 0 (as fast as possible) or above")
        if fast and rate is not None:
            raise ValueError("fast and rate are two ways of pacing: choose one")
        self._gateways = [g for g in gateways_of(config) if g.devices]
        if scenario is not None:
            scenario.check(DeviceRegistry.from_config(config), {g.id for g in gateways_of(config)})
        self._config = config
        self._mqtt = mqtt_config or config.mqtt
        self._scenario = scenario
        self._speed = speed
        self._seed = seed
        self._rate = rate
        self._fast = fast
        self._behaviour = behaviour
        self._devices = list(devices) if devices is not None else None
        self._acks = threading.Condition()
        self._live: dict[str, _Session] = {}
        self._ended: list[_Session] = []
        self._stoppers: list[threading.Thread] = []
        self._began = 0.0

    def run(self, stop: threading.Event, duration: float | None = None) -> SimulationResult:
        """Publish until `stop` is set, `duration` real seconds have passed, or the scenario ends.

        `duration` counts seconds of time stamps: wall-clock seconds in real time and rate modes, the span the
        time stamps cover in fast mode; simulated time is `duration * speed`. Without it, the scenario's
        duration divided by `speed`, or for ever without a scenario; `math.inf` is for ever after a scenario.
        """
        span = self._span(duration)
        self._ended = []
        self._began = time.monotonic()
        try:
            if self._rate is not None:
                self._run_rate(stop, span, self._rate)
            else:
                self._run_trace(stop, span)
        finally:
            finished = self._close_all()
        # From the first publish (rate mode: once connected) to the broker's last acknowledgement.
        seconds = finished - self._began
        published = sum(s.published for s in self._ended)
        return SimulationResult(published, seconds, published / seconds if seconds > 0 else 0.0)

    def _span(self, duration: float | None) -> float | None:
        if duration is not None:
            if duration <= 0:
                raise ValueError("duration must be above 0")
            return None if math.isinf(duration) else duration
        if self._scenario is not None:
            return self._scenario.duration_s / self._speed
        return None

    # -- the trace: real time and fast -------------------------------------------------------------------------

    def _run_trace(self, stop: threading.Event, span: float | None) -> None:
        now_ms = time.time_ns() // 1_000_000
        if self._fast:
            if span is None:
                raise ValueError("fast mode needs a scenario or a duration: it sends a trace that ends now")
            start_ms = now_ms - math.ceil(span * 1000)
        else:
            start_ms = now_ms
        began = time.monotonic()
        items = trace(
            self._config,
            self._scenario,
            start_ms=start_ms,
            seed=self._seed,
            duration_s=span * self._speed if span is not None else math.inf,
            speed=self._speed,
            behaviour=self._behaviour,
            devices=self._devices,
        )
        for item in items:
            if stop.is_set():
                return
            if not self._fast:
                delay = (item.at_ms - start_ms) / 1000 - (time.monotonic() - began)
                if delay > 0 and stop.wait(delay):
                    return
            if isinstance(item, Link):
                self._link(item)
            else:
                self._send(item, stop)

    def _link(self, link: Link) -> None:
        if link.online:
            if link.gateway not in self._live:
                self._open(next(g for g in self._gateways if g.id == link.gateway))
            return
        session = self._live.pop(link.gateway, None)
        if session is not None:
            log.debug("gateway %s loses its connection", link.gateway)
            self._stoppers.append(session.drop())
            self._ended.append(session)

    def _send(self, item: Publish, stop: threading.Event) -> None:
        session = self._live.get(item.gateway)
        if session is None:
            log.debug("gateway %s is offline: not sending to %s", item.gateway, item.topic)
            return
        self._make_room(session, stop)
        session.publish(item.topic, item.payload, item.retain)

    # -- rate mode --------------------------------------------------------------------------------------------

    def _run_rate(self, stop: threading.Event, span: float | None, rate: float) -> None:
        prefix = self._config.mqtt.topic_prefix
        wanted = set(self._devices) if self._devices is not None else None
        start_hour = self._scenario.start_hour if self._scenario is not None else 0.0
        devices: list[tuple[DeviceModel, str, str]] = []  # model, gateway, topic
        for gateway in self._gateways:
            for device in gateway.devices:
                if wanted is None or device.id in wanted:
                    model = model_for(device, self._seed, start_hour=start_hour)
                    topic = telemetry_topic(prefix, device.site, device.type, device.id)
                    devices.append((model, gateway.id, topic))
        if not devices:
            return
        serving = {gateway_id for _, gateway_id, _ in devices}
        for gateway in self._gateways:
            if gateway.id in serving:
                session = self._open(gateway)
                session.publish(session.status_topic, b"online", retain=True, counted=False)
        self._began = time.monotonic()
        events = self._scenario.events if self._scenario is not None else ()
        seqs = [0] * len(devices)
        last_ts = [0] * len(devices)
        slots = 0  # turns taken, a reading or a model that gave none
        start_ms = time.time_ns() // 1_000_000
        while not stop.is_set():
            elapsed = time.monotonic() - self._began
            if span is not None and elapsed >= span:
                return
            # Per-tick batches: what the rate allows by now, at most a second's worth after a stall.
            due = min(int(elapsed * rate) + 1 - slots, max(1, int(rate))) if rate else 500
            now_ms = time.time_ns() // 1_000_000
            sim_t = (now_ms - start_ms) / 1000 * self._speed
            for _ in range(max(due, 0)):
                index = slots % len(devices)
                slots += 1
                model, gateway_id, topic = devices[index]
                if events:
                    device_id = model.device.id
                    model.faults = {
                        e.fault: e.params for e in events if e.device == device_id and e.at_s <= sim_t < e.end_s
                    }
                sample = model.sample(sim_t)
                if sample is None:
                    continue
                # Unique per device: the stores keep one reading per (device, ts).
                ts = last_ts[index] = max(now_ms, last_ts[index] + 1)
                payload = orjson.dumps({**sample, "ts": ts, "seq": seqs[index]})
                seqs[index] += 1
                session = self._live[gateway_id]
                self._make_room(session, stop)
                session.publish(topic, payload)
            if rate:
                stop.wait(TICK)

    # -- sessions ---------------------------------------------------------------------------------------------

    def _open(self, gateway: SimGateway) -> _Session:
        passwords = {gw.id: gw.password for site in self._config.sites for gw in site.gateways}
        session = _Session(gateway, self._mqtt, self._config.mqtt.topic_prefix, self._acks, passwords.get(gateway.id))
        session.open()
        self._live[gateway.id] = session
        return session

    def _make_room(self, session: _Session, stop: threading.Event) -> None:
        while session.outstanding >= MAX_OUTSTANDING and not stop.is_set():
            session.wait_for_acks(MAX_OUTSTANDING // 2, 0.5)

    def _close_all(self) -> float:
        """Close every session; return when the last message before the closing statuses was acknowledged."""
        for session in self._live.values():
            session.wait_for_acks(0, CLOSE_TIMEOUT)
        finished = time.monotonic()
        for session in self._live.values():
            session.close()
            self._ended.append(session)
        self._live.clear()
        for stopper in self._stoppers:
            stopper.join(CLOSE_TIMEOUT)
        self._stoppers.clear()
        return finished
