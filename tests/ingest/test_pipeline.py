"""Ingest through a real broker: what is acknowledged is stored, and bad input does not stop good input."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from facmon.cmd.broker import Broker
from facmon.cmd.service import Service
from facmon.facility.config import FacilityConfig
from facmon.facility.model import Reading, Scalar
from facmon.ingest.errors import TelemetryStoreError
from facmon.ingest.storage import TelemetryStore
from tests.publishing import Gateway
from tests.waiting import eventually


def stored_rows(config: FacilityConfig) -> int:
    with sqlite3.connect(config.storage.telemetry.path) as conn:
        return int(conn.execute("SELECT count(*) FROM pump WHERE pressure_bar IS NOT NULL").fetchone()[0])


class FailingStore:
    """A telemetry store that is down: every write fails, as a full disk or an unreachable server would."""

    def __init__(self, real: TelemetryStore) -> None:
        self.real = real
        self.attempts = 0

    def write(self, readings: Sequence[Reading]) -> None:
        self.attempts += 1
        raise TelemetryStoreError("disk full")

    def latest(self, device_id: str) -> tuple[int, dict[str, Scalar]] | None:
        return self.real.latest(device_id)

    def ping(self) -> None:
        raise TelemetryStoreError("disk full")

    def close(self) -> None:
        self.real.close()


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


def test_nothing_is_acknowledged_while_the_store_is_down(facility_config: FacilityConfig, mqtt_broker: Broker) -> None:
    down = Service(facility_config, notifiers=[])
    failing = FailingStore(down.telemetry)
    down.pipeline._telemetry = failing  # the store goes down under a running pipeline
    down.pipeline._retry_delay = 0.05
    down.start()
    gateway = Gateway(mqtt_broker)
    try:
        assert down.subscriber.wait_connected(10)
        for seq in range(50):
            gateway.publish("pump", "pump-1", {"pressure_bar": 4.0, "seq": seq})
        eventually(lambda: failing.attempts >= 3, what="the pipeline retrying")
        assert down.pipeline.last_error == "disk full"
    finally:
        down.stop()  # ingest dies with 50 unacknowledged messages in hand
    assert stored_rows(facility_config) == 0

    # A new process with the same MQTT session and a working store gets every one of them again.
    up = Service(facility_config, notifiers=[])
    up.start()
    try:
        eventually(lambda: stored_rows(facility_config) == 50, what="all 50 redelivered and stored")
    finally:
        gateway.close()
        up.stop()


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
    finally:
        gateway.close()
        service.stop()
