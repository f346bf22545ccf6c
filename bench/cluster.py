"""Cluster takeover: how long after the leader is killed (SIGKILL) a standby leads and judges again.

Two `facmon serve` workers of the example facility, with `cluster.enabled`, over a fresh PostgreSQL database
and a mosquitto started on a free port. Each round: wait until one of them leads, publish a smoke alarm for a
detector, kill the leader with SIGKILL at once, publish another detector's alarm, and time, from the kill,
until the state store's `leader` lease has a new owner (`takeover_s`) and until the second alarm is stored
(`alarm_after_kill_s`, which adds the new leader's reload, its MQTT reconnect and the judging). The killed
worker is started again for the next round. Expected: within the lease plus one renewal round (a third of it),
since a standby notices the lapse at its next renewal.

Not measured: drain throughput with 1, 2 and 3 workers. A cluster's workers do not share the judging yet (one
leader ingests for all; see docs/cluster.md#partitions), so that figure is `bench/ingest.py`'s single worker.

Needs PostgreSQL (`FACMON_BENCH_POSTGRES_URL`, default postgresql://postgres@127.0.0.1:5432/postgres, a role
that may create a database) and mosquitto. Prints one JSON object; times in seconds. Figures only.
`make bench` runs it; `--smoke` runs one round with a 3 s lease; `--help` lists the options.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import create_engine, text
from sqlalchemy.exc import SQLAlchemyError

from facmon.cmd.broker import Broker, BrokerError, free_port, start_broker
from facmon.config.cluster import LEADER
from facmon.facility.model import ACTIVE_STATES
from facmon.facility.state import StateStore

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "facility.yaml"
ADMIN_URL = os.environ.get("FACMON_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
DETECTORS = [f"smoke-A-{n:02d}" for n in range(1, 11)]


def start_worker(
    name: str, work: Path, broker: Broker, state_url: str, lease_s: float, port: int
) -> subprocess.Popen[bytes]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FACMON_")},
        "FACMON_MQTT__URL": broker.url,
        "FACMON_MQTT__CLIENT_ID": "facmon-bench-cluster",
        "FACMON_API__PORT": str(port),
        "FACMON_STORAGE__STATE_URL": state_url,
        "FACMON_STORAGE__TELEMETRY__PATH": str(work / "telemetry.db"),
        "FACMON_STORAGE__SPOOL__PATH": str(work / f"spool-{name}.db"),
        "FACMON_CLUSTER__ENABLED": "true",
        "FACMON_CLUSTER__LEASE": f"{lease_s:g}s",
        "FACMON_CLUSTER__WORKER": name,
    }
    log = (work / f"{name}.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "facmon", "serve", "--config", str(EXAMPLE)], stdout=log, stderr=log, env=env, cwd=ROOT
    )


def wait_for(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.02)
    raise TimeoutError(f"not within {timeout:.0f} s: {what}")


def leader(store: StateStore) -> str | None:
    now = datetime.now(UTC)
    lease = next((le for le in store.leases() if le.name == LEADER), None)
    return lease.owner if lease is not None and lease.owner and lease.held_by(lease.owner, now) else None


def ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def alarmed(store: StateStore, device: str) -> bool:
    return store.list_alarms(device_id=device, states=ACTIVE_STATES).total > 0


def run(args: argparse.Namespace) -> dict[str, Any]:
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    database = f"facmon_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{database}"'))
    state_url = admin.url.set(database=database).render_as_string(hide_password=False)
    broker = start_broker("mosquitto")
    gateway = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-gateway-{uuid.uuid4().hex[:8]}")
    gateway.connect(broker.host, broker.port)
    gateway.loop_start()
    rounds: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="facmon-bench-cluster-") as tmp:
        work = Path(tmp)
        store = StateStore.open(state_url)
        ports = {name: free_port() for name in ("a", "b")}
        workers = {name: start_worker(name, work, broker, state_url, args.lease, ports[name]) for name in ports}
        try:
            for n in range(args.rounds):
                first = wait_for(lambda: leader(store), 60, "a leader")
                # Until the leader has subscribed once, the cluster's session does not exist to keep messages.
                wait_for(lambda p=ports[first]: ready(p), 60, "the leader ready")
                before, after = DETECTORS[(2 * n) % len(DETECTORS)], DETECTORS[(2 * n + 1) % len(DETECTORS)]
                publish(gateway, before, "alarm")
                wait_for(lambda d=before: alarmed(store, d), 30, "the first alarm")
                killed_at = time.monotonic()
                workers[first].send_signal(signal.SIGKILL)
                workers[first].wait(10)
                publish(gateway, after, "alarm")
                wait_for(lambda old=first: leader(store) not in (None, old), 10 * args.lease, "a new leader")
                takeover = time.monotonic() - killed_at
                wait_for(lambda d=after: alarmed(store, d), 30, "the second alarm")
                rounds.append({"takeover_s": takeover, "alarm_after_kill_s": time.monotonic() - killed_at})
                for device in (before, after):
                    publish(gateway, device, "normal")
                workers[first] = start_worker(first, work, broker, state_url, args.lease, ports[first])
        finally:
            for process in workers.values():
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            for process in workers.values():
                process.wait(30)
            store.close()
            gateway.disconnect()
            gateway.loop_stop()
            broker.stop()
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
            admin.dispose()
    takeovers = [r["takeover_s"] for r in rounds]
    alarms = [r["alarm_after_kill_s"] for r in rounds]
    return {
        "benchmark": "cluster",
        "smoke": args.smoke,
        "workers": 2,
        "lease_s": args.lease,
        "expected_within_s": args.lease * 4 / 3,
        "rounds": rounds,
        "takeover_s": {"median": statistics.median(takeovers), "max": max(takeovers)},
        "alarm_after_kill_s": {"median": statistics.median(alarms), "max": max(alarms)},
        "machine": {"cpu_count": os.cpu_count(), "python": platform.python_version()},
    }


def publish(client: mqtt.Client, device: str, state: str) -> None:
    payload = orjson.dumps({"state": state, "ts": time.time_ns() // 1_000_000})
    client.publish(f"facility/riverside/smoke/{device}/telemetry", payload, qos=1).wait_for_publish(10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="leaders killed (default 5)")
    parser.add_argument("--lease", type=float, default=15.0, help="cluster.lease in seconds (default 15)")
    parser.add_argument("--smoke", action="store_true", help="one round with a 3 s lease")
    args = parser.parse_args(argv)
    if args.smoke:
        args.rounds, args.lease = 1, 3.0
    try:
        figures = run(args)
    except (SQLAlchemyError, BrokerError, TimeoutError, OSError) as exc:
        print(f"cluster: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
