"""Two `Service` workers over one PostgreSQL and the real broker, the group's sites split into 8 partitions.

Each worker holds half of the partitions and judges their readings on their own MQTT sessions; the leader runs
the timed jobs. When the worker holding a pump's partition dies, the other takes the partition over within the
lease, and a pressure drop published across the failover raises one alarm and opens one work order.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from facmon.cmd.broker import Broker
from facmon.cmd.service import Service
from facmon.config.cluster import partition_lease
from facmon.config.errors import ConfigError
from tests.cluster.group import cluster_config, detector, forget_sessions, pump
from tests.conftest import _postgres_database, example_config
from tests.publishing import Gateway
from tests.signing import signed_in
from tests.simulators.listening import Listener
from tests.waiting import eventually


@pytest.fixture
def postgres_url() -> Iterator[str]:
    yield from _postgres_database()


def worker(tmp_path: Path, broker: Broker, state_url: str, name: str) -> Service:
    return Service(cluster_config(tmp_path, broker, state_url, name), notifiers=[])


Pair = tuple[Service, Service]


@pytest.fixture
def pair(tmp_path: Path, mqtt_broker: Broker, postgres_url: str) -> Iterator[Pair]:
    """Workers a and b of one cluster, started in that order (a leads), once they share the partitions evenly."""
    a = worker(tmp_path, mqtt_broker, postgres_url, "a")
    b = worker(tmp_path, mqtt_broker, postgres_url, "b")
    a.start()
    b.start()
    try:
        eventually(lambda: balanced(a, b), timeout=15, what="4 partitions on each worker, each subscribed")
        yield a, b
    finally:
        b.stop()
        a.stop()
        forget_sessions(mqtt_broker, a.config.mqtt.client_id)


def balanced(*workers: Service) -> bool:
    held = [w.keeper.partitions() if w.keeper else set() for w in workers]
    return all(len(h) == 8 // len(workers) for h in held) and all(w.wait_connected(0) for w in workers)


def holder(workers: tuple[Service, ...], device: str) -> tuple[Service, Service]:
    """The worker holding the partition of the device's site, and the other one."""
    [site] = {d.site for d in workers[0].registry if d.id == device}
    partition = workers[0].config.cluster.partition_of(site)
    [owner] = [w for w in workers if w.keeper and partition in w.keeper.partitions()]
    [other] = [w for w in workers if w is not owner]
    return owner, other


def alarms_of(service: Service, device: str) -> list[tuple[str, str]]:
    return [(a.rule, a.severity) for a in service.state.list_alarms(device_id=device).items]


def test_the_partition_of_a_dead_worker_is_taken_over_and_the_alarm_is_raised_once(
    pair: Pair, mqtt_broker: Broker
) -> None:
    owner, other = holder(pair, pump(1))
    assert owner.partitions is not None and other.partitions is not None
    partition = owner.config.cluster.partition_of("site-001")
    gateway = Gateway(mqtt_broker, site="site-001")
    start = int(time.time() * 1000) - 10 * 60_000
    pressures = (4.0, 3.6, 3.2, 2.8, 2.4, 2.0, 1.6, 1.3)
    for i, pressure in enumerate(pressures[:4]):
        gateway.publish("pump", pump(1), {"pressure_bar": pressure, "pump_running": True, "ts": start + i * 40_000})
    eventually(lambda: alarms_of(owner, pump(1)), what="the partition's holder raises the alarm at 2.8 bar")
    assert partition not in other.partitions.held  # the other worker never saw the pump's readings

    # The holder dies: its jobs and its sessions stop, and it never gives its leases up.
    owner.scheduler.stop()
    owner.partitions.stop()
    died = time.monotonic()
    for i, pressure in enumerate(pressures[4:], start=4):
        gateway.publish("pump", pump(1), {"pressure_bar": pressure, "pump_running": True, "ts": start + i * 40_000})
    gateway.close()

    eventually(lambda: partition in other.partitions.held, timeout=15, what="the other worker takes the partition")
    took = time.monotonic() - died
    eventually(lambda: alarms_of(other, pump(1)) == [("pump-pressure-low", "critical")], what="one critical alarm")
    seen = other.presence.get(pump(1))
    assert seen is not None and seen.latest["pressure_bar"] == 1.3  # it ingested what the dead worker left unread
    # Opened at 2.8 bar as P2 by the first holder, made P1 by the next when the alarm turned critical.
    eventually(
        lambda: [o.priority for o in other.state.list_work_orders(device_id=pump(1)).items] == ["P1"],
        what="one work order, P1",
    )
    leases = {lease.name: lease for lease in other.state.leases()}
    assert leases[partition_lease(partition)].owner == other.keeper.worker if other.keeper else False
    assert took < 3 + 1 + 3  # within the lease and a renewal round, with the test's own slack


def test_a_cluster_on_sqlite_is_refused(tmp_path: Path, mqtt_broker: Broker) -> None:
    with pytest.raises(ConfigError, match=r"cluster\.enabled: a cluster needs a PostgreSQL state store"):
        example_config(tmp_path, mqtt_broker, FACMON_CLUSTER__ENABLED="true")


def test_an_acknowledgement_through_another_worker_holds_on_the_partitions_holder(
    pair: Pair, mqtt_broker: Broker
) -> None:
    owner, other = holder(pair, pump(2))
    gateway = Gateway(mqtt_broker, site="site-002")
    start = int(time.time() * 1000) - 10 * 60_000
    for i, pressure in enumerate((4.0, 2.8, 2.6)):
        gateway.publish("pump", pump(2), {"pressure_bar": pressure, "pump_running": True, "ts": start + i * 40_000})
    [raised] = eventually(lambda: owner.state.list_alarms(device_id=pump(2)).items, what="an alarm")

    # The operator's dashboard is served by the worker that does not judge the pump's readings.
    [acked] = other.rules.acknowledge([raised.id], "operator", other.clock.now())
    assert acked.state == "active_acked"

    # The pressure comes back: an acknowledged alarm whose condition returns is cleared, not returned_unacked.
    for i, pressure in enumerate((3.6, 4.0), start=3):
        gateway.publish("pump", pump(2), {"pressure_bar": pressure, "pump_running": True, "ts": start + i * 40_000})
    gateway.close()
    cleared = eventually(
        lambda: (alarm := owner.state.get_alarm(raised.id)).state == "cleared" and alarm, what="the alarm cleared"
    )
    assert cleared.acked_by == "operator"
    kinds = [event.kind for event in owner.state.alarm_events(raised.id)]
    assert "acknowledged" in kinds and "returned_unacked" not in kinds


def test_every_worker_says_who_leads_is_ready_and_counts_its_leases(pair: Pair) -> None:
    a, b = pair
    for service in (a, b):
        assert service.keeper is not None
        api = signed_in(service, "viewer")
        assert api.get("/readyz").status_code == 200  # its partitions subscribed
        view = api.get("/api/v1/cluster").json()
        assert view["leader"] == "a" and view["worker"] == service.keeper.worker
        assert [w["name"] for w in view["workers"]] == ["a", "b"]
        [lead] = [lease for lease in view["leases"] if lease["name"] == "leader"]
        assert lead["owner"] == "a" and lead["held"] and lead["epoch"] == 1
        owners = [lease["owner"] for lease in view["leases"] if lease["name"].startswith("partition-")]
        assert sorted(owners) == ["a"] * 4 + ["b"] * 4
        metrics = api.get("/metrics").text
        expected = 1.0 if service is a else 0.0
        assert f'facmon_cluster_leader{{worker="{service.keeper.worker}"}} {expected}' in metrics


def test_the_leader_killed_in_the_middle_of_an_escalation_the_next_step_pages_once_on_time(
    tmp_path: Path, mqtt_broker: Broker, postgres_url: str
) -> None:
    # The first step's wait in seconds, so that the next step falls due after the leader is gone.
    waits = {
        "FACMON_ONCALL__ESCALATION_POLICIES__0__STEPS__0__WAIT": "8s",
        "FACMON_ONCALL__ESCALATION_POLICIES__0__STEPS__1__WAIT": "60s",
    }
    a, b = (Service(cluster_config(tmp_path, mqtt_broker, postgres_url, n, **waits)) for n in ("a", "b"))
    pagers = Listener(mqtt_broker, "facility/pagers")
    gateway = Gateway(mqtt_broker, site="site-001")

    def pages() -> list[tuple[str, int]]:
        return [(topic.rsplit("/", 1)[1], at) for topic, _, at in pagers.messages if not topic.endswith("/all")]

    try:
        a.start()
        b.start()
        eventually(lambda: balanced(a, b), timeout=15, what="the partitions shared")
        assert a.keeper is not None and a.keeper.is_leader
        gateway.publish("smoke", detector(1), {"state": "alarm"})
        [(_, paged_at)] = eventually(pages, timeout=15, what="the first step's page, sent by the leader")

        a.scheduler.stop()  # the leader dies: its jobs stop, its leases lapse
        assert a.partitions is not None
        a.partitions.stop()
        eventually(lambda: b.keeper is not None and b.keeper.is_leader, timeout=10, what="b leads")
        eventually(lambda: len(pages()) >= 4, timeout=20, what="the second step's pages, by the new leader")
        time.sleep(2)  # anything sent twice would arrive by now
        second = pages()[1:]
        assert sorted(p for p, _ in second) == ["li.na", "wang.jun", "zhang.wei"]  # each once
        late_ms = max(at for _, at in second) - (paged_at + 8_000)
        assert late_ms <= (3 + 1) * 1000  # on time, give or take the lease and a renewal round
    finally:
        gateway.close()
        b.stop()
        a.stop()
        pagers.client.disconnect()
        pagers.client.loop_stop()
        forget_sessions(mqtt_broker, a.config.mqtt.client_id)


def test_every_worker_shows_the_devices_judged_by_the_other(pair: Pair, mqtt_broker: Broker) -> None:
    owner, other = holder(pair, pump(3))
    gateway = Gateway(mqtt_broker, site="site-003")
    try:
        gateway.publish("pump", pump(3), {"pressure_bar": 3.7, "pump_running": True})
    finally:
        gateway.close()
    eventually(lambda: (s := owner.presence.get(pump(3))) is not None and s.latest["pressure_bar"] == 3.7)
    # The other worker never gets the pump's readings, and shows them all the same, one sharing round later.
    seen = eventually(
        lambda: (s := other.presence.get(pump(3))) is not None and s.latest.get("pressure_bar") == 3.7 and s,
        timeout=15,
        what="the reading shared",
    )
    assert seen.latest_ts_ms == owner.presence.get(pump(3)).latest_ts_ms  # type: ignore[union-attr]
    api = signed_in(other, "viewer")
    [device] = [d for d in api.get("/api/v1/devices").json()["items"] if d["id"] == pump(3)]
    assert device["status"] == "online" and device["latest"]["pressure_bar"] == 3.7


def test_every_worker_hears_every_gateways_status(pair: Pair, mqtt_broker: Broker) -> None:
    topic = "facility/site-003/gateway/gw-site-003/status"
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-gw-{uuid.uuid4().hex[:8]}")
    publisher.connect(mqtt_broker.host, mqtt_broker.port)
    publisher.loop_start()
    try:
        publisher.publish(topic, b"online", qos=1, retain=True).wait_for_publish(10)
        for worker in pair:  # the site's partition is held by one of them; both hear its gateway
            eventually(
                lambda w=worker: (g := w.gateways.get("site-003", "gw-site-003")) is not None and g.status == "online",
                what=f"the gateway's status on {worker.keeper.worker if worker.keeper else ''}",
            )
    finally:
        publisher.publish(topic, b"", qos=1, retain=True).wait_for_publish(10)  # the retained status removed
        publisher.disconnect()
        publisher.loop_stop()
