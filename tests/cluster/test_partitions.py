"""A worker's partitions, on one worker with a clock the test moves: what it judges, and what it stops judging.

The leases are real rows in PostgreSQL; another worker's claim is made on them directly once this worker's
lapsed, as a worker that took over while this one was paused would.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from facmon.cmd.broker import Broker
from facmon.cmd.service import Service
from facmon.config.cluster import LEADER, partition_lease
from facmon.facility.clock import epoch_ms
from facmon.facility.model import Reading
from facmon.ingest.subscriber import Message, partition_client_id
from facmon.rules.conditions import RuleSet
from facmon.rules.processor import RuleProcessor
from tests.cluster.group import cluster_config, forget_sessions, pump
from tests.conftest import FakeClock, _postgres_database
from tests.waiting import eventually


@pytest.fixture
def postgres_url() -> Iterator[str]:
    yield from _postgres_database()


@pytest.fixture
def lone(tmp_path: Path, mqtt_broker: Broker, postgres_url: str) -> Iterator[tuple[Service, FakeClock]]:
    """One worker whose keeper steps only when the test says, with its ingest thread running."""
    clock = FakeClock(datetime.now(UTC))
    service = Service(cluster_config(tmp_path, mqtt_broker, postgres_url, "a"), clock=clock, notifiers=[])
    service.pipeline.start()
    try:
        yield service, clock
    finally:
        service.stop()
        forget_sessions(mqtt_broker, service.config.mqtt.client_id)


def low_pressure(service: Service, site: int, clock: FakeClock, partition: int) -> Message:
    """A pressure that raises the pump's alarm at once, as the partition's session would deliver it."""
    payload = orjson.dumps({"pressure_bar": 1.2, "pump_running": True, "ts": epoch_ms(clock.now()) - 1000})
    topic = f"facility/site-{site:03d}/pump/{pump(site)}/telemetry"
    return Message(topic, payload, 1, 1, int(time.time() * 1000), 1, partition)


def test_each_partition_has_its_session_and_judges_only_its_sites(lone: tuple[Service, FakeClock]) -> None:
    service, _ = lone
    assert service.keeper is not None and service.partitions is not None
    service.keeper.step()
    assert service.keeper.partitions() == set(range(8)) and service.keeper.is_leader
    partition = service.config.cluster.partition_of("site-001")
    held = service.partitions.held[partition]
    assert held.sites == ("site-001",)
    assert {rule.device.site for rule in held.rules.rules.all()} == {"site-001"}
    subscriber = service.partitions.subscriber(partition)
    assert subscriber is not None
    assert subscriber.client_id == partition_client_id(service.config.mqtt.client_id, partition)
    assert subscriber.filters == ["facility/site-001/+/+/telemetry"]  # gateways' status: the worker's own listener
    eventually(lambda: service.wait_connected(0), what="every partition's session subscribed")


def test_a_partition_taken_over_while_this_worker_was_paused_is_judged_no_more(
    lone: tuple[Service, FakeClock], caplog: pytest.LogCaptureFixture
) -> None:
    service, clock = lone
    assert service.keeper is not None and service.partitions is not None
    service.keeper.step()
    lost, kept = (service.config.cluster.partition_of(f"site-00{n}") for n in (1, 2))
    # Paused past the lease: another worker claims the pump's partition; the other leases lapse unclaimed.
    clock.advance(seconds=4)
    with service.state.begin() as tx:
        assert tx.claim_lease(partition_lease(lost), "b", clock.now(), service.config.cluster.lease) is not None

    # Resumed, before its keeper's next round: what it judges for the lost partition is refused and given up,
    # unacknowledged; the partition behind it in the same batch goes on.
    service.pipeline.submit(low_pressure(service, 1, clock, lost))
    service.pipeline.submit(low_pressure(service, 2, clock, kept))
    eventually(lambda: service.state.list_alarms(device_id=pump(2)).total == 1, what="the kept partition's alarm")
    eventually(lambda: service.pipeline.received == 1, what="the kept partition's message through")
    assert service.state.list_alarms(device_id=pump(1)).total == 0
    [given_up] = [r.getMessage() for r in caplog.records if "given up, unacknowledged" in r.getMessage()]
    assert given_up.startswith(f"ingest: partition {lost}: lease {partition_lease(lost)} held at epoch 1 is at epoch 2")

    # Its keeper's round: the lost partition is let go, the lapsed ones claimed again at a new epoch.
    service.keeper.step()
    assert lost not in service.keeper.partitions() and kept in service.keeper.partitions()
    assert service.keeper.epoch(partition_lease(kept)) == 2 and service.keeper.epoch(LEADER) == 2
    assert lost not in service.partitions.held
    service.pipeline.submit(low_pressure(service, 1, clock, lost))  # a message still on its way from the session
    service.pipeline.submit(low_pressure(service, 2, clock, kept))
    eventually(lambda: service.pipeline.received == 2, what="the kept partition's next message")
    assert service.state.list_alarms(device_id=pump(1)).total == 0


def test_a_partition_taken_over_first_finishes_what_its_last_holder_committed(
    lone: tuple[Service, FakeClock],
) -> None:
    service, clock = lone
    assert service.keeper is not None
    # The last holder committed the pump's alarm and died before its work order was opened.
    sites = service.registry.of_sites(["site-003"])
    dead = RuleProcessor(RuleSet.compile(service.config.rules, sites), sites, service.state, shared=True)
    dead.restore(clock.now())
    now_ms = epoch_ms(clock.now())
    for i, pressure in enumerate((4.0, 2.8, 2.6)):
        at = now_ms - (3 - i) * 40_000
        dead.on_readings([Reading(pump(3), at, {"pressure_bar": pressure, "pump_running": True})], clock.now())
    [alarm] = service.state.list_alarms(device_id=pump(3)).items
    assert service.state.list_work_orders(device_id=pump(3)).items == []

    clock.advance(seconds=1)  # the follow-ups are stamped with the wall clock, which this test's clock trails
    service.keeper.step()  # takes the partition over: its unfinished follow-ups first, before any reading
    [order] = service.state.list_work_orders(device_id=pump(3)).items
    assert order.alarm_id == alarm.id
