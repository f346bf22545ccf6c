"""Ingest through a real broker: what is acknowledged is stored, and bad input does not stop good input."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from facmon.cmd.broker import Broker, free_port
from facmon.cmd.service import Service
from facmon.config.facility import FacilityConfig
from facmon.config.loader import load_config
from facmon.facility.model import Reading
from facmon.ingest.errors import TelemetryStoreError
from facmon.ingest.storage import TelemetryStore
from tests.conftest import EXAMPLE, configured_telemetry, example_config
from tests.publishing import Gateway
from tests.signing import signed_in
from tests.waiting import eventually


def stored_rows(config: FacilityConfig) -> int:
    with sqlite3.connect(config.storage.telemetry.path) as conn:
        return int(conn.execute("SELECT count(*) FROM pump WHERE pressure_bar IS NOT NULL").fetchone()[0])


class FlakyStore:
    """A telemetry store that can be taken down: writes fail, as on a full disk or an unreachable server."""

    def __init__(self, real: TelemetryStore) -> None:
        self.real = real
        self.down = True
        self.attempts = 0

    def write(self, readings: Sequence[Reading]) -> None:
        self.attempts += 1
        if self.down:
            raise TelemetryStoreError("disk full")
        self.real.write(readings)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_valid_and_malformed_traffic_interleaved(facility_config: FacilityConfig, mqtt_broker: Broker) -> None:
    service = Service(facility_config, notifiers=[])
    service.start()
    gateway = Gateway(mqtt_broker)
    try:
        assert service.subscriber.wait_connected(10)
        huge = b'{"pressure_bar": "' + b"x" * (1024 * 1024) + b'"}'
        corpus: list[tuple[str, str, object]] = [
            ("pump", "pump-1", b"\xc3\x28 not utf-8"),
            ("pump", "pump-1", b'{"pressure_bar": 4.0'),
            ("pump", "pump-1", b'{"pressure_bar": NaN}'),
            ("pump", "pump-1", huge),
            ("pump", "pump-1", b"[" * 2000 + b"]" * 2000),
            ("pump", "pump-1", {"pressure_bar": "3.9"}),
            ("pump", "pump-42", {"pressure_bar": 3.9}),
            ("power", "pump-1", {"voltage_l1_v": 230}),
        ]
        for i, (device_type, device_id, payload) in enumerate(corpus):
            gateway.publish("pump", "pump-2", {"pressure_bar": 4.0, "seq": i})
            gateway.publish(device_type, device_id, payload)
        gateway.publish("pump", "pump-2", {"pressure_bar": 4.0, "seq": 99})

        eventually(lambda: service.pipeline.received == 2 * len(corpus) + 1, what="every message processed")
        assert stored_rows(facility_config) == len(corpus) + 1
        rejects = eventually(
            lambda: service.state.list_rejects(limit=100).total == len(corpus) and service.state.list_rejects(limit=100)
        )
        reasons = sorted(r.reason.split(":")[0] for _, r in rejects.items)
        assert reasons == sorted(
            [
                "payload is not valid UTF-8",
                "payload is not valid JSON",
                "payload is not valid JSON",
                f"payload of {len(huge)} bytes is over the limit of 262144",
                "payload is not valid JSON",
                "pressure_bar must be a number, got a string",
                "unknown device 'pump-42'",
                "device 'pump-1' is a pump, the topic says 'power'",
            ]
        )
        assert service.pipeline.accepted == len(corpus) + 1
        assert sum(service.pipeline.rejected.values()) == len(corpus)
    finally:
        gateway.close()
        service.stop()


def test_a_store_outage_mid_stream_loses_nothing(facility_config: FacilityConfig, mqtt_broker: Broker) -> None:
    flaky = FlakyStore(configured_telemetry(facility_config))
    flaky.down = False
    service = Service(facility_config, notifiers=[], telemetry=flaky, ingest_retry_delay=0.05)
    service.start()
    gateway = Gateway(mqtt_broker)
    try:
        assert service.subscriber.wait_connected(10)
        for seq in range(20):
            gateway.publish("pump", "pump-1", {"pressure_bar": 4.0, "seq": seq})
        eventually(lambda: stored_rows(facility_config) == 20)
        flaky.down = True  # the store goes down mid-stream: readings wait in the spool, acknowledged
        for seq in range(20, 60):
            gateway.publish("pump", "pump-1", {"pressure_bar": 4.0, "seq": seq})
        eventually(lambda: service.pipeline.received == 60, what="all 60 handled while the store is down")
        assert service.spool.depth == 40
        assert stored_rows(facility_config) == 20
        assert service.pipeline.last_error == "disk full"
        # Rules and presence do not wait for the store.
        snapshot = service.presence.get("pump-1")
        assert snapshot is not None and snapshot.latest["pressure_bar"] == 4.0

        flaky.down = False
        eventually(lambda: service.spool.depth == 0, what="the spool drained into the store")
        assert stored_rows(facility_config) == 60
        assert service.pipeline.last_error is None
    finally:
        gateway.close()
        service.stop()


def test_a_full_spool_stops_acknowledging_and_the_broker_keeps_the_rest(
    facility_config: FacilityConfig, mqtt_broker: Broker
) -> None:
    flaky = FlakyStore(configured_telemetry(facility_config))
    down = Service(facility_config, notifiers=[], telemetry=flaky, ingest_retry_delay=0.05)
    down.spool.max_readings = 10
    down.start()
    gateway = Gateway(mqtt_broker)
    try:
        assert down.subscriber.wait_connected(10)
        for seq in range(50):
            gateway.publish("pump", "pump-1", {"pressure_bar": 4.0, "seq": seq})
        eventually(lambda: down.pipeline.last_error is not None and "full" in down.pipeline.last_error)
        assert down.spool.depth <= 10
        handled = down.pipeline.received
        assert handled < 50
    finally:
        down.stop()  # ingest stops with the spool full and the rest unacknowledged
    assert stored_rows(facility_config) == 0

    # A new process with the same MQTT session, spool and a working store gets every reading into the store.
    up = Service(facility_config, notifiers=[])
    up.start()
    try:
        eventually(lambda: stored_rows(facility_config) == 50, what="spooled and redelivered readings stored")
        assert up.spool.depth == 0
    finally:
        gateway.close()
        up.stop()


def test_ingest_killed_mid_stream_loses_nothing_acknowledged(tmp_path: Path, mqtt_broker: Broker) -> None:
    config_file = tmp_path / "facility.yaml"
    config_file.write_text(EXAMPLE.read_text())
    env = {
        **os.environ,
        "FACMON_MQTT__URL": mqtt_broker.url,
        "FACMON_MQTT__CLIENT_ID": f"facmon-kill-{uuid.uuid4().hex[:8]}",
        "FACMON_API__PORT": str(port := free_port()),
    }
    config = example_config(tmp_path, mqtt_broker, **{k: v for k, v in env.items() if k.startswith("FACMON_")})

    def serve() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "facmon", "serve", "--config", str(config_file)],
            env={**env, **_store_env(tmp_path)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    first = serve()
    gateway = Gateway(mqtt_broker)
    try:
        eventually(lambda: _ready(port), timeout=30, what="the first ingest process subscribed")
        sent = 0
        for seq in range(300):
            gateway.publish("pump", "pump-1", {"pressure_bar": 4.0, "seq": seq})
            sent += 1
            if seq == 150:
                first.send_signal(signal.SIGKILL)  # no orderly stop: whatever was in hand is lost to it
        first.wait(10)
        second = serve()
        try:
            eventually(lambda: stored_rows(config) == sent, timeout=30, what="every published reading stored")
        finally:
            second.terminate()
            second.wait(10)
    finally:
        gateway.close()
        if first.poll() is None:
            first.kill()


def _store_env(tmp_path: Path) -> dict[str, str]:
    return {
        "FACMON_STORAGE__TELEMETRY__PATH": str(tmp_path / "telemetry.db"),
        "FACMON_STORAGE__SPOOL__PATH": str(tmp_path / "spool.db"),
        "FACMON_STORAGE__STATE_URL": f"sqlite:///{tmp_path / 'state.db'}",
    }


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_duplicate_resends_are_stored_once(facility_config: FacilityConfig, mqtt_broker: Broker) -> None:
    service = Service(facility_config, notifiers=[])
    service.start()
    gateway = Gateway(mqtt_broker)
    try:
        assert service.subscriber.wait_connected(10)
        reading = {"pressure_bar": 3.7, "ts": "2026-11-22T10:00:00+08:00", "seq": 5}
        for _ in range(3):
            gateway.publish("pump", "pump-1", reading)
        gateway.publish("pump", "pump-1", [reading, {**reading, "seq": 6, "ts": "2026-11-22T10:00:05+08:00"}])
        eventually(lambda: service.pipeline.received == 4)
        assert stored_rows(facility_config) == 2
        assert service.pipeline.accepted == 2
        metrics = signed_in(service, "ops").get("/metrics").text
        assert "facmon_ingest_duplicates_total 3.0" in metrics
        assert "facmon_ingest_readings_accepted_total 2.0" in metrics
    finally:
        gateway.close()
        service.stop()


def test_seq_gaps_are_counted_per_device(facility_config: FacilityConfig, mqtt_broker: Broker) -> None:
    service = Service(facility_config, notifiers=[])
    service.start()
    gateway = Gateway(mqtt_broker)
    try:
        assert service.subscriber.wait_connected(10)
        for seq in (1, 2, 5, 6, 9):
            gateway.publish("pump", "pump-2", {"pressure_bar": 4.0, "seq": seq})
        eventually(lambda: service.pipeline.received == 5)
        device = signed_in(service, "ops").get("/api/v1/devices/pump-2").json()
        assert device["seq_gaps"] == 4
        assert "facmon_ingest_seq_gaps_total 4.0" in signed_in(service, "ops").get("/metrics").text
    finally:
        gateway.close()
        service.stop()


def test_gateway_status_and_will(facility_config: FacilityConfig, mqtt_broker: Broker) -> None:
    service = Service(facility_config, notifiers=[])
    service.start()
    api = signed_in(service, "ops")
    status = "facility/riverside/gateway/{}/status"
    # A registered gateway that says it is online, then dies: the broker publishes its will.
    dying = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"gw-{uuid.uuid4().hex[:8]}")
    dying.will_set(status.format("gw-riverside-1"), "offline", qos=1, retain=True)
    dying.connect(mqtt_broker.host, mqtt_broker.port, keepalive=1)
    dying.loop_start()
    stray = Gateway(mqtt_broker)
    try:
        assert service.subscriber.wait_connected(10)
        dying.publish(status.format("gw-riverside-1"), "online", qos=1, retain=True).wait_for_publish(10)
        stray.client.publish(status.format("gw-unknown"), "online", qos=1, retain=True).wait_for_publish(10)

        def states() -> dict[str, tuple[str, bool]]:
            items = api.get("/api/v1/gateways").json()["items"]
            return {g["id"]: (g["status"], g["registered"]) for g in items}

        eventually(lambda: states()["gw-riverside-1"] == ("online", True))
        assert states()["gw-riverside-2"] == ("unknown", True)
        assert states()["gw-unknown"] == ("online", False)

        dying.loop_stop()
        dying.socket().close()  # the connection is lost without a DISCONNECT: the will goes out
        eventually(lambda: states()["gw-riverside-1"] == ("offline", True), timeout=15)
    finally:
        stray.client.publish(status.format("gw-unknown"), b"", qos=1, retain=True).wait_for_publish(10)
        stray.close()
        service.stop()


def test_mqtt5_session_keeps_what_was_published_while_ingest_was_away(tmp_path: Path, mqtt_broker: Broker) -> None:
    if mqtt_broker.kind == "embedded":
        pytest.skip("the embedded broker speaks MQTT 3.1.1 only")
    config = example_config(tmp_path, mqtt_broker, FACMON_MQTT__PROTOCOL="5", FACMON_MQTT__SESSION_EXPIRY="1h")
    first = Service(config, notifiers=[])
    first.start()
    assert first.subscriber.wait_connected(10)
    first.stop()
    gateway = Gateway(mqtt_broker)
    try:
        for seq in range(30):
            gateway.publish("pump", "pump-1", {"pressure_bar": 4.0, "seq": seq})
        again = Service(config, notifiers=[])
        again.start()
        try:
            eventually(lambda: stored_rows(config) == 30, what="the 30 queued while away")
        finally:
            again.stop()
    finally:
        gateway.close()


def test_a_shared_subscription_splits_telemetry_between_ingest_processes(tmp_path: Path, mqtt_broker: Broker) -> None:
    if mqtt_broker.kind == "embedded":
        pytest.skip("the embedded broker has no shared subscriptions")
    group = f"g{uuid.uuid4().hex[:8]}"
    # Without rules: round robin spreads a device's readings over the group, which rules refuse.
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    data["rules"] = []
    without_rules = tmp_path / "ingest-only.yaml"
    without_rules.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    services = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        config = load_config(
            without_rules,
            env={
                "FACMON_MQTT__URL": mqtt_broker.url,
                "FACMON_MQTT__CLIENT_ID": f"facmon-test-{name}-{group}",
                "FACMON_MQTT__SHARED_GROUP": group,
                "FACMON_STORAGE__TELEMETRY__PATH": str(tmp_path / name / "telemetry.db"),
                "FACMON_STORAGE__SPOOL__PATH": str(tmp_path / name / "spool.db"),
                "FACMON_STORAGE__STATE_URL": f"sqlite:///{tmp_path / name / 'state.db'}",
            },
        )
        service = Service(config, notifiers=[])
        service.start()
        assert service.subscriber.wait_connected(10)
        services.append((service, config))
    gateway = Gateway(mqtt_broker)
    try:
        for seq in range(100):
            gateway.publish("pump", "pump-1", {"pressure_bar": 4.0, "seq": seq})
        eventually(lambda: sum(s.pipeline.received for s, _ in services) == 100, what="all 100 received")
        counts = [stored_rows(config) for _, config in services]
        assert sum(counts) == 100
        assert all(count > 0 for count in counts), counts  # each process took a share, none took them all twice
    finally:
        gateway.close()
        for service, _ in services:
            service.stop()


def test_the_service_applies_telemetry_retention(tmp_path: Path, mqtt_broker: Broker) -> None:
    config = example_config(tmp_path, mqtt_broker, FACMON_STORAGE__TELEMETRY__RETENTION="30d")
    service = Service(config, notifiers=[])
    now_ms = int(service.clock.now().timestamp() * 1000)
    day = 86_400_000
    service.telemetry.write(
        [
            Reading("pump-1", now_ms - 31 * day, {"pressure_bar": 4.0}),
            Reading("pump-1", now_ms - day, {"pressure_bar": 4.1}),
        ]
    )
    service.start()
    try:
        eventually(lambda: stored_rows(config) == 1, what="the reading older than 30 days deleted")
    finally:
        service.stop()
