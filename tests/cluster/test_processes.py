"""Three `facmon serve` processes over one PostgreSQL and a real Mosquitto, as a cluster.

The leader is killed with SIGKILL in the middle of a pressure drop, and the next leader is stopped with SIGSTOP
past its lease and then let go on: each fault still gives one alarm and one work order, and the paused worker
raises nothing when it resumes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from facmon.cmd.broker import Broker, free_port
from facmon.facility.accounts import Accounts
from facmon.facility.model import Role
from facmon.facility.state import StateStore
from tests.conftest import EXAMPLE, _postgres_database
from tests.publishing import Gateway
from tests.waiting import eventually

pytestmark = pytest.mark.slow


@pytest.fixture
def postgres_url() -> Iterator[str]:
    yield from _postgres_database()


class Worker:
    def __init__(self, name: str, tmp_path: Path, broker: Broker, state_url: str, token: str) -> None:
        self.name = name
        self.port = free_port()
        self.log = tmp_path / f"{name}.log"
        env = {
            **os.environ,
            "FACMON_MQTT__URL": broker.url,
            "FACMON_MQTT__CLIENT_ID": "facmon-cluster-processes",
            "FACMON_API__PORT": str(self.port),
            "FACMON_STORAGE__STATE_URL": state_url,
            "FACMON_STORAGE__TELEMETRY__PATH": str(tmp_path / "telemetry.db"),
            "FACMON_STORAGE__SPOOL__PATH": str(tmp_path / f"spool-{name}.db"),
            "FACMON_CLUSTER__ENABLED": "true",
            "FACMON_CLUSTER__LEASE": "3s",
            "FACMON_CLUSTER__WORKER": name,
        }
        with self.log.open("w") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "facmon", "serve", "--config", str(EXAMPLE)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )
        self.api = httpx.Client(
            base_url=f"http://127.0.0.1:{self.port}", timeout=2, headers={"Authorization": f"Bearer {token}"}
        )

    def cluster(self) -> dict | None:
        try:
            response = self.api.get("/api/v1/cluster")
        except httpx.HTTPError:
            return None
        return response.json() if response.status_code == 200 else None

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.send_signal(signal.SIGTERM)
        self.api.close()
        return self.process.wait(30)


def leader_seen_by(worker: Worker) -> str | None:
    view = worker.cluster()
    return view["leader"] if view else None


def test_a_killed_and_a_paused_leader_each_leave_one_alarm_per_fault(
    tmp_path: Path, mqtt_broker: Broker, postgres_url: str
) -> None:
    store = StateStore.open(postgres_url)
    token, _ = Accounts(store).add_token("cluster-test", Role.VIEWER, at=datetime.now(UTC))
    workers = {name: Worker(name, tmp_path, mqtt_broker, postgres_url, token) for name in ("a", "b", "c")}
    gateway = Gateway(mqtt_broker)
    try:
        first = eventually(lambda: leader_seen_by(workers["c"]), timeout=60, what="a leader")
        start = int(time.time() * 1000) - 10 * 60_000
        drop = (4.0, 3.6, 3.2, 2.8, 2.4, 2.0, 1.6, 1.3)
        for i, pressure in enumerate(drop[:4]):
            gateway.publish(
                "pump", "pump-1", {"pressure_bar": pressure, "pump_running": True, "ts": start + i * 40_000}
            )
        eventually(lambda: store.list_alarms(device_id="pump-1").total == 1, what="the alarm at 2.8 bar")

        workers[first].process.kill()  # SIGKILL in the middle of the drop: no lease released, nothing flushed
        for i, pressure in enumerate(drop[4:], start=4):
            gateway.publish(
                "pump", "pump-1", {"pressure_bar": pressure, "pump_running": True, "ts": start + i * 40_000}
            )
        rest = [w for name, w in workers.items() if name != first]
        second = eventually(
            lambda: (seen := leader_seen_by(rest[0])) not in (None, first) and seen, timeout=20, what="a new leader"
        )
        eventually(
            lambda: (
                [(a.rule, a.severity) for a in store.list_alarms(device_id="pump-1").items]
                == [("pump-pressure-low", "critical")]
            ),
            what="the one alarm, critical at 1.3 bar",
        )
        eventually(
            lambda: [o.priority for o in store.list_work_orders(device_id="pump-1").items] == ["P1"],
            what="one work order, P1",
        )

        paused = workers[second]
        paused.process.send_signal(signal.SIGSTOP)  # past its lease: the third worker takes over
        (third,) = (w for w in rest if w is not paused)
        eventually(lambda: leader_seen_by(third) == third.name, timeout=20, what="the third worker leads")
        gateway.publish("smoke", "smoke-A-01", {"state": "alarm"})
        eventually(lambda: store.list_alarms(device_id="smoke-A-01").total == 1, what="the smoke alarm")

        paused.process.send_signal(signal.SIGCONT)
        eventually(lambda: (view := paused.cluster()) is not None and view["leader"] == third.name, what="resumed")
        gateway.publish("smoke", "smoke-A-02", {"state": "alarm"})
        eventually(lambda: store.list_alarms(device_id="smoke-A-02").total == 1, what="the next alarm, by the leader")
        assert store.list_alarms(device_id="smoke-A-01").total == 1
        assert store.list_alarms(device_id="pump-1").total == 1
        assert len(store.list_work_orders(device_id="smoke-A-01").items) == 1
        eventually(
            lambda: f"cluster: {second} is no longer the leader" in paused.log.read_text(),
            what="the resumed worker gives its ingest up",
        )
    finally:
        gateway.close()
        codes = {name: w.stop() for name, w in workers.items()}
        store.close()
    for name, code in codes.items():
        output = workers[name].log.read_text()
        assert "Traceback" not in output, output
        assert code == (-signal.SIGKILL if name == first else 0), output
