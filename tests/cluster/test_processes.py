"""Three `facmon serve` processes over one PostgreSQL and a real Mosquitto, as a cluster of 8 partitions.

The worker holding a pump's partition is killed with SIGKILL in the middle of a pressure drop, and the worker
holding a detector's partition is stopped with SIGSTOP past its lease and then let go on: each fault still
gives one alarm, one work order and one page per person paged, and the paused worker raises and pages nothing
when it resumes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson
import pytest

from facmon.cmd.broker import Broker, free_port
from facmon.facility.accounts import Accounts
from facmon.facility.model import Role
from facmon.facility.state import StateStore
from tests.cluster.group import detector, forget_sessions, group_config, pump
from tests.conftest import _postgres_database
from tests.publishing import Gateway
from tests.simulators.listening import Listener
from tests.waiting import eventually

pytestmark = pytest.mark.slow
CLIENT_ID = "facmon-cluster-processes"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    yield from _postgres_database()


class Worker:
    def __init__(self, name: str, tmp_path: Path, broker: Broker, state_url: str, token: str, config: Path) -> None:
        self.name = name
        self.port = free_port()
        self.log = tmp_path / f"{name}.log"
        env = {
            **os.environ,
            "FACMON_MQTT__URL": broker.url,
            "FACMON_MQTT__CLIENT_ID": CLIENT_ID,
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
                [sys.executable, "-m", "facmon", "serve", "--config", str(config)],
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


def owners_seen_by(worker: Worker) -> dict[str, str | None]:
    """Lease name → owner, as a worker's API shows them; empty while it does not answer."""
    view = worker.cluster()
    return {lease["name"]: lease["owner"] for lease in view["leases"] if lease["held"]} if view else {}


def balanced(worker: Worker) -> bool:
    owners = owners_seen_by(worker)
    counts = sorted(
        sum(1 for name, owner in owners.items() if owner == w and name != "leader") for w in ("a", "b", "c")
    )
    return counts == [2, 3, 3]


def pages(pagers: Listener) -> list[tuple[str, str]]:
    """(work order number, person) of each page sent to a person's pager."""
    found = []
    for topic, payload, _ in pagers.messages:
        if not topic.endswith("/all"):
            number = next(word for word in orjson.loads(payload)["subject"].split() if word.startswith("WO-"))
            found.append((number.strip(":,"), topic.rsplit("/", 1)[1]))
    return found


def test_a_killed_and_a_paused_worker_each_leave_one_alarm_per_fault(
    tmp_path: Path, mqtt_broker: Broker, postgres_url: str
) -> None:
    store = StateStore.open(postgres_url)
    token, _ = Accounts(store).add_token("cluster-test", Role.VIEWER, at=datetime.now(UTC))
    config = group_config(tmp_path / "group.yaml")
    workers = {name: Worker(name, tmp_path, mqtt_broker, postgres_url, token, config) for name in ("a", "b", "c")}
    partition_of = {site: zlib.crc32(site.encode()) % 8 for site in ("site-001", "site-002")}
    pagers = Listener(mqtt_broker, "facility/pagers")
    pumps = Gateway(mqtt_broker, site="site-001")
    detectors = Gateway(mqtt_broker, site="site-002")
    try:
        eventually(lambda: balanced(workers["c"]), timeout=60, what="3, 3 and 2 partitions on the workers")
        start = int(time.time() * 1000) - 10 * 60_000
        drop = (4.0, 3.6, 3.2, 2.8, 2.4, 2.0, 1.6, 1.3)
        for i, pressure in enumerate(drop[:4]):
            pumps.publish("pump", pump(1), {"pressure_bar": pressure, "pump_running": True, "ts": start + i * 40_000})
        eventually(lambda: store.list_alarms(device_id=pump(1)).total == 1, what="the alarm at 2.8 bar")

        pump_lease = f"partition-{partition_of['site-001']}"
        first = owners_seen_by(workers["c"])[pump_lease]
        assert first is not None
        workers[first].process.kill()  # SIGKILL in the middle of the drop: no lease released, nothing flushed
        for i, pressure in enumerate(drop[4:], start=4):
            pumps.publish("pump", pump(1), {"pressure_bar": pressure, "pump_running": True, "ts": start + i * 40_000})
        rest = [w for name, w in workers.items() if name != first]
        eventually(
            lambda: owners_seen_by(rest[0]).get(pump_lease) not in (None, first),
            timeout=20,
            what="the pump's partition taken over",
        )
        eventually(
            lambda: (
                [(a.rule, a.severity) for a in store.list_alarms(device_id=pump(1)).items]
                == [("pump-pressure-low", "critical")]
            ),
            what="the one alarm, critical at 1.3 bar",
        )
        eventually(
            lambda: [o.priority for o in store.list_work_orders(device_id=pump(1)).items] == ["P1"],
            what="one work order, P1",
        )

        detector_lease = f"partition-{partition_of['site-002']}"
        second = eventually(lambda: owners_seen_by(rest[0]).get(detector_lease), what="the detectors' holder")
        paused = workers[second]
        paused.process.send_signal(signal.SIGSTOP)  # past its lease: the third worker takes over
        (third,) = (w for w in rest if w is not paused)
        eventually(
            lambda: owners_seen_by(third).get(detector_lease) == third.name,
            timeout=20,
            what="the third worker holds the detectors' partition",
        )
        detectors.publish("smoke", detector(2, 1), {"state": "alarm"})
        eventually(lambda: store.list_alarms(device_id=detector(2, 1)).total == 1, what="the smoke alarm")

        paused.process.send_signal(signal.SIGCONT)
        eventually(lambda: paused.cluster() is not None, what="the paused worker answers again")
        detectors.publish("smoke", detector(2, 2), {"state": "alarm"})
        eventually(lambda: store.list_alarms(device_id=detector(2, 2)).total == 1, what="the next alarm")
        assert store.list_alarms(device_id=detector(2, 1)).total == 1
        assert store.list_alarms(device_id=pump(1)).total == 1
        assert len(store.list_work_orders(device_id=detector(2, 1)).items) == 1
        # One page per person paged for each work order, whichever worker led when it was sent.
        orders = [
            o.number
            for d in (pump(1), detector(2, 1), detector(2, 2))
            for o in store.list_work_orders(device_id=d).items
        ]
        eventually(
            lambda: {number for number, _ in pages(pagers)} >= set(orders),
            timeout=20,
            what="a page for each work order",
        )
        time.sleep(2)  # a page sent twice would be here by now
        sent = pages(pagers)
        assert sorted(sent) == sorted(set(sent)), sent
        eventually(
            lambda: f"partition {partition_of['site-002']} is no longer judged here" in paused.log.read_text(),
            what="the resumed worker gives the detectors' partition up",
        )
    finally:
        pumps.close()
        detectors.close()
        pagers.client.disconnect()
        pagers.client.loop_stop()
        codes = {name: w.stop() for name, w in workers.items()}
        store.close()
        forget_sessions(mqtt_broker, CLIENT_ID)
        if sys.exc_info()[0] is not None:  # failing: what each worker said, for the report
            for name, w in workers.items():
                print(f"--- worker {name} ---", *w.log.read_text().splitlines()[-60:], sep="\n")
    for name, code in codes.items():
        output = workers[name].log.read_text()
        assert "Traceback" not in output, output
        assert code == (-signal.SIGKILL if name == first else 0), output
