"""The state store fails while a fire alarm arrives → nothing is acknowledged meanwhile → once the store is back,
the alarm is raised with its work order and its pages, once. And a crash between an alarm's commit and its work
order's leaves nothing half done after the restart."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx

from facmon.cmd.broker import Broker, free_port
from facmon.cmd.service import Service
from facmon.facility.model import WorkOrder
from facmon.facility.state import StateStore
from tests.conftest import EXAMPLE, example_config
from tests.pg_cluster import pg_cluster
from tests.publishing import Gateway
from tests.waiting import eventually


def fire_work_orders(store: StateStore) -> list[WorkOrder]:
    return [o for o in store.list_work_orders().items if o.device_id == "smoke-A-01"]


def assert_raised_once_with_work_order_and_pages(store: StateStore) -> None:
    alarms = [a for a in store.list_alarms(limit=100).items if a.device_id == "smoke-A-01"]
    assert [a.rule for a in alarms] == ["smoke-alarm"]
    [order] = fire_work_orders(store)
    assert (order.alarm_id, order.priority) == (alarms[0].id, "P1")
    pages = store.pages_of(order.number)
    assert pages, "nobody was paged"
    assert len({(p.recipient, p.channel) for p in pages}) == len(pages)  # one page per person and channel


def a_fire_alarm_survives_an_outage(
    service: Service, broker: Broker, outage_begins: Callable[[], None], outage_ends: Callable[[], None]
) -> None:
    service.start()
    gateway = Gateway(broker)
    try:
        assert service.subscriber.wait_connected(10)
        outage_begins()
        gateway.publish("smoke", "smoke-A-01", {"state": "alarm"})
        eventually(lambda: service.pipeline.stalled_for() > 0, timeout=30, what="ingest waiting for the store")
        assert service.pipeline.received == 0  # judged by nobody, so acknowledged to nobody

        outage_ends()
        eventually(
            lambda: service.pipeline.received == 1, timeout=30, what="the message through once the store is back"
        )
        eventually(lambda: fire_work_orders(service.state), timeout=15, what="the fire alarm's work order")
        eventually(lambda: service.state.pages_of(fire_work_orders(service.state)[0].number), what="its page")
        assert_raised_once_with_work_order_and_pages(service.state)
        assert service.pipeline.stalled_for() == 0
    finally:
        gateway.close()
        service.stop()


def test_a_fire_alarm_during_a_sqlite_lock_is_raised_with_its_work_order_once_the_lock_is_gone(
    tmp_path: Path, mqtt_broker: Broker
) -> None:
    config = example_config(tmp_path, mqtt_broker)
    service = Service(config, ingest_retry_delay=0.2)
    # Another process holds the write lock longer than the state store waits for it (its busy timeout).
    locker = sqlite3.connect(tmp_path / "state.db", isolation_level=None)

    def lock() -> None:
        locker.execute("BEGIN EXCLUSIVE")

    def unlock() -> None:
        locker.execute("ROLLBACK")

    try:
        a_fire_alarm_survives_an_outage(service, mqtt_broker, lock, unlock)
    finally:
        locker.close()


def test_a_fire_alarm_during_a_postgresql_outage_is_raised_with_its_work_order_once_it_is_back(
    tmp_path: Path, mqtt_broker: Broker
) -> None:
    with pg_cluster() as cluster:
        config = example_config(tmp_path, mqtt_broker, FACMON_STORAGE__STATE_URL=cluster.url)
        service = Service(config, ingest_retry_delay=0.2)
        a_fire_alarm_survives_an_outage(service, mqtt_broker, cluster.stop, cluster.start)


def serve(config: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "facmon", "serve", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )


def test_a_crash_between_an_alarm_and_its_work_order_is_completed_after_the_restart_once(
    tmp_path: Path, mqtt_broker: Broker
) -> None:
    state_path = tmp_path / "state.db"
    port = free_port()
    env = {
        **os.environ,
        "FACMON_MQTT__URL": mqtt_broker.url,
        "FACMON_MQTT__CLIENT_ID": "facmon-crash-test",
        "FACMON_API__PORT": str(port),
        "FACMON_STORAGE__STATE_URL": f"sqlite:///{state_path}",
        "FACMON_STORAGE__TELEMETRY__PATH": str(tmp_path / "telemetry.db"),
        "FACMON_STORAGE__SPOOL__PATH": str(tmp_path / "spool.db"),
    }
    StateStore.open(env["FACMON_STORAGE__STATE_URL"]).close()
    # The alarm's transaction commits; the work order's cannot, as if the process died right between the two.
    with sqlite3.connect(state_path) as db:
        db.execute("CREATE TRIGGER no_work_orders BEFORE INSERT ON work_orders BEGIN SELECT RAISE(ABORT, 'x'); END")
    log = tmp_path / "serve.log"
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    store = StateStore.open(env["FACMON_STORAGE__STATE_URL"])
    gateway = Gateway(mqtt_broker)
    first = serve(EXAMPLE, env, log)
    try:
        eventually(ready, timeout=30, what=f"ready; log:\n{log.read_text()}")
        gateway.publish("smoke", "smoke-A-01", {"state": "alarm"})
        eventually(lambda: store.list_alarms().total == 1, what="the alarm committed")
        eventually(lambda: "work_orders" in log.read_text(), what="the work order's transaction failing")
        assert fire_work_orders(store) == []
        first.send_signal(signal.SIGKILL)
        first.wait(10)

        with sqlite3.connect(state_path) as db:
            db.execute("DROP TRIGGER no_work_orders")
        for _ in range(2):  # and a second restart repeats nothing
            process = serve(EXAMPLE, env, log)
            try:
                eventually(ready, timeout=30, what=f"ready again; log:\n{log.read_text()}")
                eventually(lambda: fire_work_orders(store), what="the work order after the restart")
                eventually(lambda: store.pages_of(fire_work_orders(store)[0].number), what="its pages")
                assert_raised_once_with_work_order_and_pages(store)
            finally:
                process.send_signal(signal.SIGTERM)
                process.wait(30)
    finally:
        if first.poll() is None:
            first.kill()
        gateway.close()
        store.close()
