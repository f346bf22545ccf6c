"""Two `Service` workers over one PostgreSQL and the real broker: one leads, the other takes over when it dies.

The leader alone holds the MQTT session, judges readings and runs the timed jobs; a pressure drop published
across the failover raises one alarm and opens one work order.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from facmon.cmd.broker import Broker
from facmon.cmd.service import Service
from facmon.config.cluster import LEADER
from facmon.config.errors import ConfigError
from tests.conftest import _postgres_database, example_config
from tests.publishing import Gateway
from tests.signing import signed_in
from tests.waiting import eventually


@pytest.fixture
def postgres_url() -> Iterator[str]:
    yield from _postgres_database()


def worker(tmp_path: Path, broker: Broker, state_url: str, name: str, session: str) -> Service:
    config = example_config(
        tmp_path,
        broker,
        FACMON_MQTT__CLIENT_ID=session,  # one session for the cluster: whoever leads resumes it
        FACMON_STORAGE__STATE_URL=state_url,
        FACMON_STORAGE__SPOOL__PATH=str(tmp_path / f"spool-{name}.db"),
        FACMON_CLUSTER__ENABLED="true",
        FACMON_CLUSTER__LEASE="3s",
        FACMON_CLUSTER__WORKER=name,
    )
    return Service(config, notifiers=[])


Pair = tuple[Service, Service, Gateway]


@pytest.fixture
def pair(tmp_path: Path, mqtt_broker: Broker, postgres_url: str) -> Iterator[Pair]:
    """Workers a and b of one cluster, started in that order (a leads), and a gateway to publish through."""
    session = f"facmon-cluster-{uuid.uuid4().hex[:8]}"
    a = worker(tmp_path, mqtt_broker, postgres_url, "a", session)
    b = worker(tmp_path, mqtt_broker, postgres_url, "b", session)
    a.start()
    b.start()
    gateway = Gateway(mqtt_broker)
    try:
        yield a, b, gateway
    finally:
        gateway.close()
        b.stop()
        a.stop()


def alarms_of(service: Service, device: str) -> list[tuple[str, str]]:
    return [(a.rule, a.severity) for a in service.state.list_alarms(device_id=device).items]


def test_the_standby_takes_over_a_dead_leader_and_the_alarm_is_raised_once(pair: Pair) -> None:
    a, b, gateway = pair
    assert a.keeper is not None and b.keeper is not None
    eventually(lambda: a.subscriber.connected, what="the leader connected")
    assert a.keeper.is_leader and not b.keeper.is_leader
    assert not b.subscriber.connected  # the standby leaves the session to the leader

    start = int(time.time() * 1000) - 10 * 60_000
    pressures = (4.0, 3.6, 3.2, 2.8, 2.4, 2.0, 1.6, 1.3)
    for i, pressure in enumerate(pressures[:4]):
        gateway.publish("pump", "pump-1", {"pressure_bar": pressure, "pump_running": True, "ts": start + i * 40_000})
    eventually(lambda: alarms_of(a, "pump-1"), what="the leader raises the alarm at 2.8 bar")

    # The leader dies: its jobs and its connection stop, and it never gives its lease up.
    a.scheduler.stop()
    a.subscriber.stop()
    died = time.monotonic()
    for i, pressure in enumerate(pressures[4:], start=4):
        gateway.publish("pump", "pump-1", {"pressure_bar": pressure, "pump_running": True, "ts": start + i * 40_000})

    eventually(lambda: b.keeper is not None and b.keeper.is_leader, timeout=15, what="b takes the lead over")
    took = time.monotonic() - died
    eventually(lambda: alarms_of(b, "pump-1") == [("pump-pressure-low", "critical")], what="one critical alarm")
    seen = b.presence.get("pump-1")
    assert seen is not None and seen.latest["pressure_bar"] == 1.3  # b ingested what a left unread
    # Opened at 2.8 bar as P2 by a, made P1 by b when the alarm turned critical: one work order.
    eventually(
        lambda: [o.priority for o in b.state.list_work_orders(device_id="pump-1").items] == ["P1"],
        what="one work order, P1",
    )
    leases = {lease.name: lease for lease in b.state.leases()}
    assert leases[LEADER].owner == "b" and leases[LEADER].epoch == 2
    assert took < 3 + 1 + 3  # within the lease and a renewal round, with the test's own slack


def test_a_cluster_on_sqlite_is_refused(tmp_path: Path, mqtt_broker: Broker) -> None:
    with pytest.raises(ConfigError, match=r"cluster\.enabled: a cluster needs a PostgreSQL state store"):
        example_config(tmp_path, mqtt_broker, FACMON_CLUSTER__ENABLED="true")


def test_an_acknowledgement_through_the_standby_holds_on_the_leader(pair: Pair) -> None:
    a, b, gateway = pair
    eventually(lambda: a.subscriber.connected, what="the leader connected")
    start = int(time.time() * 1000) - 10 * 60_000
    for i, pressure in enumerate((4.0, 2.8, 2.6)):
        gateway.publish("pump", "pump-1", {"pressure_bar": pressure, "pump_running": True, "ts": start + i * 40_000})
    [raised] = eventually(lambda: a.state.list_alarms(device_id="pump-1").items, what="an alarm")

    # The operator's dashboard is served by b, which does not judge readings.
    [acked] = b.rules.acknowledge([raised.id], "operator", b.clock.now())
    assert acked.state == "active_acked"

    # The pressure comes back: an acknowledged alarm whose condition returns is cleared, not returned_unacked.
    for i, pressure in enumerate((3.6, 4.0), start=3):
        gateway.publish("pump", "pump-1", {"pressure_bar": pressure, "pump_running": True, "ts": start + i * 40_000})
    cleared = eventually(
        lambda: (alarm := a.state.get_alarm(raised.id)).state == "cleared" and alarm, what="the alarm cleared"
    )
    assert cleared.acked_by == "operator"
    kinds = [event.kind for event in a.state.alarm_events(raised.id)]
    assert "acknowledged" in kinds and "returned_unacked" not in kinds


def test_every_worker_says_who_leads_is_ready_and_counts_its_leases(pair: Pair) -> None:
    a, b, _ = pair
    eventually(lambda: a.subscriber.connected, what="the leader connected")
    for service in (a, b):
        assert service.keeper is not None
        api = signed_in(service, "viewer")
        assert api.get("/readyz").status_code == 200  # the standby is ready too: to serve, and to take over
        view = api.get("/api/v1/cluster").json()
        assert view["leader"] == "a" and view["worker"] == service.keeper.worker
        assert [w["name"] for w in view["workers"]] == ["a", "b"]
        [lead] = [lease for lease in view["leases"] if lease["name"] == "leader"]
        assert lead["owner"] == "a" and lead["held"] and lead["epoch"] == 1
        metrics = api.get("/metrics").text
        expected = 1.0 if service is a else 0.0
        assert f'facmon_cluster_leader{{worker="{service.keeper.worker}"}} {expected}' in metrics
