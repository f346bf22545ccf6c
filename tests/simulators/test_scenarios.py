"""Every shipped scenario, through the real broker and the whole pipeline, raises exactly its alarms.

The trace is published as fast as the broker takes it, in steps of simulated time: before each step the
service's clock is set to the step's end, the step's messages are published (QoS 1) and ingested, and the
rules and the flood detector are ticked. Time in the service is thus the scenario's time, however fast the
machine: delays, `no_data` and floods are judged as they would be live, to within a step.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from facmon.cmd.broker import Broker
from facmon.cmd.service import Service
from facmon.facility.model import AlarmState, Severity
from facmon.rules.processor import AlarmChange
from facmon.simulators.scenario import Scenario, load_scenario, shipped
from facmon.simulators.trace import Publish, gateways_of, trace
from tests.conftest import FakeClock, example_config
from tests.waiting import eventually

STEP_MS = 30_000
VISIBLE = (AlarmState.ACTIVE_UNACKED, AlarmState.ACTIVE_ACKED)


class Shown:
    """The highest severity each (rule, device) reached while shown to operators."""

    def __init__(self) -> None:
        self.worst: dict[tuple[str, str], Severity] = {}

    def on_alarm_change(self, change: AlarmChange) -> None:
        alarm = change.alarm
        if alarm.state in VISIBLE and not alarm.suppressed:
            key = (alarm.rule, alarm.device_id)
            if key not in self.worst or alarm.severity.rank > self.worst[key].rank:
                self.worst[key] = alarm.severity


def ingested(service: Service, sent: int) -> bool:
    assert service.pipeline.received >= sent, f"ingest stuck at {service.pipeline.received} of {sent}"
    return True


def run_scenario(scenario: Scenario, tmp_path: Path, broker: Broker) -> tuple[Shown, Service]:
    config = example_config(tmp_path, broker)
    duration_ms = int(scenario.duration_s * 1000)
    # All in the past, so that no time stamp is ahead of the wall clock that ingest checks them against.
    start_ms = (time.time_ns() // 1_000_000 - duration_ms - 120_000) // STEP_MS * STEP_MS
    clock = FakeClock(datetime.fromtimestamp(start_ms / 1000, UTC))
    service = Service(config, clock=clock, notifiers=[])
    shown = Shown()
    service.rules.listeners.append(shown)
    scenario.check(service.registry, {g.id for g in gateways_of(config)})
    items = [i for i in trace(config, scenario, start_ms=start_ms, seed=1) if isinstance(i, Publish)]

    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"scenario-{scenario.name}")
    publisher.max_inflight_messages_set(1000)
    publisher.max_queued_messages_set(0)
    publisher.connect(broker.host, broker.port)
    publisher.loop_start()
    service.pipeline.start()
    service.subscriber.start()
    try:
        assert service.subscriber.wait_connected(10)
        sent, i = 0, 0
        for step_end in range(start_ms + STEP_MS, start_ms + duration_ms + STEP_MS, STEP_MS):
            clock.current = datetime.fromtimestamp(step_end / 1000, UTC)
            last = None
            while i < len(items) and items[i].at_ms < step_end:
                item = items[i]
                if not item.retain:  # gateway status is not the rules' business; retained it would outlive the test
                    last = publisher.publish(item.topic, item.payload, qos=1)
                    sent += 1
                i += 1
            if last is not None:
                last.wait_for_publish(30)
            # Polled often: the wait comes once per step, and most steps take a few milliseconds.
            eventually(lambda sent=sent: ingested(service, sent), timeout=60, interval=0.001)
            service.rules.tick(clock.now())
            service.floods.tick(clock.now())
        assert sent == sum(1 for item in items if not item.retain)
    finally:
        publisher.disconnect()
        publisher.loop_stop()
        service.subscriber.stop()
        service.pipeline.stop()
    return shown, service


@pytest.mark.parametrize("name", sorted(shipped()))
def test_scenario_raises_exactly_its_alarms(name: str, tmp_path: Path, mqtt_broker: Broker) -> None:
    scenario = load_scenario(name)
    shown, service = run_scenario(scenario, tmp_path, mqtt_broker)
    try:
        expected = {(a.rule, a.device): a.severity for a in scenario.expect}
        assert shown.worst == expected
        floods = service.state.floods_overlapping(
            datetime(2000, 1, 1, tzinfo=UTC), datetime.now(UTC) + timedelta(days=1)
        )
        assert bool(floods) is scenario.expect_flood
        assert service.state.list_rejects(limit=1).total == 0
    finally:
        service.rules.flush(service.clock.now())
        service.telemetry.close()
        service.state.close()
