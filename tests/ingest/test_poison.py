"""Poison messages through a real broker: a message no store can hold is rejected, and what comes after it flows."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import orjson
import pytest

from facmon.cmd.broker import Broker
from facmon.cmd.service import Service
from facmon.config.facility import FacilityConfig
from facmon.facility.clock import epoch_ms
from facmon.facility.model import Reading
from facmon.ingest.errors import TelemetryStoreError
from facmon.ingest.storage import TelemetryStore
from facmon.ingest.subscriber import Message
from tests.conftest import FakeClock, configured_telemetry
from tests.ingest.test_decode import OUT_OF_RANGE
from tests.publishing import Gateway
from tests.waiting import eventually

POISON = 6.66  # the pressure the faulty store below cannot take
PUMP_1 = "facility/riverside/pump/pump-1/telemetry"


class StoreWithAFault:
    """A telemetry store that fails, as no one foresaw, on any batch holding one particular reading."""

    def __init__(self, real: TelemetryStore) -> None:
        self.real = real
        self.down = False
        self.writes = 0

    def write(self, readings: Sequence[Reading]) -> None:
        self.writes += 1
        if self.down:
            raise TelemetryStoreError("connection refused")
        if any(r.fields.get("pressure_bar") == POISON for r in readings):
            raise RuntimeError("the driver choked on a value")
        self.real.write(readings)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def stored_pressures(config: FacilityConfig) -> list[float]:
    with sqlite3.connect(config.storage.telemetry.path) as conn:
        rows = conn.execute("SELECT pressure_bar FROM pump WHERE device_id = 'pump-1' ORDER BY ts").fetchall()
    return [row[0] for row in rows]


def fire_alarms(service: Service) -> dict[str, str]:
    return {a.device_id: a.rule for a in service.state.list_alarms(limit=100).items if a.rule == "smoke-alarm"}


def test_each_value_no_store_can_hold_is_rejected_and_a_fire_alarm_right_after_it_is_raised(
    facility_config: FacilityConfig, mqtt_broker: Broker
) -> None:
    service = Service(facility_config, notifiers=[])
    service.start()
    gateway = Gateway(mqtt_broker)
    try:
        assert service.subscriber.wait_connected(10)
        for n, (topic, payload, expected) in enumerate(OUT_OF_RANGE, start=1):
            _, _, device_type, device_id, _ = topic.split("/")
            gateway.publish(device_type, device_id, payload)
            detector = f"smoke-A-{n:02d}"
            gateway.publish("smoke", detector, {"state": "alarm"})

            eventually(
                lambda d=detector: d in fire_alarms(service), what=f"the fire alarm of {detector} after {payload!r}"
            )
            rejects = service.state.list_rejects(limit=100)
            assert rejects.total == n
            assert expected in rejects.items[0][1].reason  # newest first
        assert service.pipeline.stalled_for() == 0
    finally:
        gateway.close()
        service.stop()


def test_a_reading_the_store_fails_on_is_rejected_alone_and_the_rest_of_its_batch_is_stored(
    facility_config: FacilityConfig, clock: FakeClock
) -> None:
    faulty = StoreWithAFault(configured_telemetry(facility_config))
    service = Service(facility_config, notifiers=[], clock=clock, telemetry=faulty)
    try:
        pressures = [4.0 + i / 100 for i in range(40)]
        pressures[23] = POISON
        now_ms = epoch_ms(clock.now())
        batch = [
            Message(PUMP_1, orjson.dumps({"pressure_bar": value, "ts": now_ms - 40_000 + i * 1000}), 1, i, now_ms)
            for i, value in enumerate(pressures)
        ]
        service.pipeline.process(batch)  # one batch, as the ingest thread takes it from the queue

        assert stored_pressures(facility_config) == [p for p in pressures if p != POISON]
        [(_, reject)] = service.state.list_rejects().items
        assert reject.reason == "the telemetry store refused the reading: RuntimeError: the driver choked on a value"
        assert f'"pressure_bar": {POISON}' in reject.payload
        assert reject.topic == PUMP_1
        assert faulty.writes > 2  # it was found by halving the batch, not by luck
        assert service.pipeline.accepted == 39
    finally:
        service.stop()


def test_a_reading_the_store_fails_on_does_not_block_the_spool(
    facility_config: FacilityConfig, mqtt_broker: Broker
) -> None:
    faulty = StoreWithAFault(configured_telemetry(facility_config))
    faulty.down = True  # an outage first: everything, the poison too, waits in the spool
    service = Service(facility_config, notifiers=[], telemetry=faulty, ingest_retry_delay=0.05)
    service.start()
    gateway = Gateway(mqtt_broker)
    try:
        assert service.subscriber.wait_connected(10)
        pressures = [4.0, 4.1, POISON, 4.2, 4.3]
        for value in pressures:
            gateway.publish("pump", "pump-1", {"pressure_bar": value})
        eventually(lambda: service.spool.depth == 5, what="five readings spooled")

        faulty.down = False
        eventually(lambda: service.spool.depth == 0, what="the spool drained past the poison")
        assert stored_pressures(facility_config) == [4.0, 4.1, 4.2, 4.3]
        [(_, reject)] = service.state.list_rejects().items
        assert "RuntimeError: the driver choked on a value" in reject.reason
        assert service.pipeline.last_error is None
    finally:
        gateway.close()
        service.stop()


@pytest.mark.parametrize("payload", [b'{"state": "idle", "trips": 18446744073709551615}'])
def test_a_poison_message_stays_rejected_after_a_restart(
    facility_config: FacilityConfig, mqtt_broker: Broker, payload: bytes
) -> None:
    # Before, the broker redelivered an unacknowledged poison message after a restart, and ingest stalled again.
    for _ in range(2):
        service = Service(facility_config, notifiers=[])
        service.start()
        gateway = Gateway(mqtt_broker)
        try:
            assert service.subscriber.wait_connected(10)
            gateway.publish("elevator", "lift-A1", payload)
            gateway.publish("pump", "pump-1", {"pressure_bar": 4.0})
            eventually(lambda s=service: s.pipeline.received == 2, what="both messages handled")
            assert service.pipeline.stalled_for() == 0
        finally:
            gateway.close()
            service.stop()
    assert service.state.list_rejects().total == 2
    assert len(stored_pressures(facility_config)) == 2
