"""Cluster: drain throughput with 1, 2 and 3 workers over partitions, and the takeover after a SIGKILL.

A property group of 8 sites (the synthetic load facility's, with the example's rules and policies), one site per
partition of 8 (`cluster.sites`), served by `facmon serve` workers with `cluster.enabled` over a fresh
PostgreSQL database each time and a mosquitto started on a free port (`max_queued_messages 0`).

- Drain: k workers start and share the partitions evenly (each partition its own MQTT session); then all of
  them are stopped with SIGSTOP, a backlog of N QoS 1 messages is published (the broker queues each partition's
  share for its session), and they are let go on together. The rate is N over the time from then until every
  reading is in a telemetry store. Each worker writes its own SQLite telemetry file (standing in for a shared
  InfluxDB, whose writes scale by themselves): the figure is facmon's, not one SQLite file's. A bare paho
  consumer drains the same backlog on the same broker before and after (`bench/ingest.py`'s), and the rates
  are given as ratios to it: machines differ.
- Takeover: two workers; each round a detector's alarm is raised, the worker holding its partition is killed
  with SIGKILL at once, another detector of the same site alarms, and from the kill it is timed until the
  partition's lease has a new owner (`takeover_s`) and until the second alarm is stored (`alarm_after_kill_s`,
  which adds the new holder's restore, its MQTT session's resumption and the judging). Expected: within the
  lease plus one renewal round (a third of it). The killed worker is started again for the next round.

Needs PostgreSQL (`FACMON_BENCH_POSTGRES_URL`, default postgresql://postgres@127.0.0.1:5432/postgres, a role
that may create a database) and mosquitto. Prints one JSON object; times in seconds. Figures only.
`make bench` runs it; `--smoke` runs it in seconds (a small backlog, 1 and 2 workers, one takeover with a 3 s
lease); `--help` lists the options.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import ingest
import orjson
import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import create_engine, text
from sqlalchemy.exc import SQLAlchemyError

from facmon.cmd.broker import Broker, BrokerError, MosquittoBroker, free_port, start_broker
from facmon.config.cluster import partition_lease
from facmon.facility.model import ACTIVE_STATES, DeviceType
from facmon.facility.state import StateStore
from facmon.simulators.load import synthetic_facility

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "facility.yaml"
ADMIN_URL = os.environ.get("FACMON_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
PARTITIONS = 8
SITES = 8
DEVICES_PER_SITE = 12  # 2 pumps, 2 panels, 2 lifts, 6 detectors
SITE = "site-001"  # the takeover's site, in partition 0
DETECTORS = [f"{SITE}-smoke-{n:03d}" for n in range(1, 7)]


def group_config(work: Path) -> Path:
    """The group's config: the example's rules and policies over the synthetic sites, one site per partition."""
    example = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    data = {**example, "sites": synthetic_facility(SITES, DEVICES_PER_SITE)["sites"]}
    data["cluster"] = {
        "partitions": PARTITIONS,
        "sites": {f"site-{k:03d}": (k - 1) % PARTITIONS for k in range(1, SITES + 1)},
    }
    path = work / "group.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


class Cluster:
    """`facmon serve` workers of the group over one fresh database."""

    def __init__(self, work: Path, broker: Broker, state_url: str, config: Path, lease_s: float) -> None:
        self.work, self.broker, self.state_url, self.config, self.lease_s = work, broker, state_url, config, lease_s
        self.ports: dict[str, int] = {}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.store = StateStore.open(state_url)

    def start(self, name: str) -> None:
        port = self.ports.setdefault(name, free_port())
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("FACMON_")},
            "FACMON_MQTT__URL": self.broker.url,
            "FACMON_MQTT__CLIENT_ID": "facmon-bench-cluster",
            "FACMON_API__PORT": str(port),
            "FACMON_STORAGE__STATE_URL": self.state_url,
            "FACMON_STORAGE__TELEMETRY__PATH": str(self.telemetry(name)),
            "FACMON_STORAGE__SPOOL__PATH": str(self.work / f"spool-{name}.db"),
            "FACMON_CLUSTER__ENABLED": "true",
            "FACMON_CLUSTER__LEASE": f"{self.lease_s:g}s",
            "FACMON_CLUSTER__WORKER": name,
        }
        log = (self.work / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "facmon", "serve", "--config", str(self.config)],
            stdout=log,
            stderr=log,
            env=env,
            cwd=ROOT,
        )

    def telemetry(self, name: str) -> Path:
        return self.work / f"telemetry-{name}.db"

    def owners(self) -> dict[str, str]:
        """Lease name → the worker holding it now."""
        now = datetime.now(UTC)
        return {le.name: le.owner for le in self.store.leases() if le.owner and le.held_by(le.owner, now)}

    def balanced(self) -> bool:
        """Every partition held, evenly over the running workers, and each of them ready (its sessions subscribed)."""
        owners = self.owners()
        held = [owners.get(partition_lease(p)) for p in range(PARTITIONS)]
        names = [n for n, proc in self.processes.items() if proc.poll() is None]
        counts = [held.count(n) for n in names]
        return None not in held and max(counts) - min(counts) <= 1 and all(ready(self.ports[n]) for n in names)

    def signal_all(self, sig: signal.Signals) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(sig)

    def stop(self) -> None:
        self.signal_all(signal.SIGCONT)
        self.signal_all(signal.SIGTERM)
        for process in self.processes.values():
            process.wait(60)
        self.store.close()


@contextmanager
def database() -> Iterator[str]:
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"facmon_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def wait_for(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.02)
    raise TimeoutError(f"not within {timeout:.0f} s: {what}")


def ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def alarmed(store: StateStore, device: str) -> bool:
    return store.list_alarms(device_id=device, states=ACTIVE_STATES).total > 0


def stored_readings(paths: list[Path]) -> int:
    total = 0
    for path in paths:
        if not path.exists():
            continue
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            for device_type in DeviceType:
                # A type's table is made at the first write of its type; the names are the enum's own.
                with contextlib.suppress(sqlite3.OperationalError):
                    total += conn.execute(f"SELECT count(*) FROM {device_type}").fetchone()[0]  # noqa: S608
        finally:
            conn.close()
    return total


def drain(
    workers: int, broker: Broker, work: Path, config: Path, messages: list[tuple[str, bytes]], lease_s: float
) -> dict[str, float]:
    """The rate at which `workers` workers drain the backlog, once they share the partitions."""
    run = work / f"drain-{workers}"
    run.mkdir()
    with database() as state_url:
        cluster = Cluster(run, broker, state_url, config, lease_s)
        try:
            for n in range(workers):
                cluster.start(f"w{n + 1}")
            wait_for(cluster.balanced, 6 * lease_s, f"{workers} workers sharing the partitions")
            cluster.signal_all(signal.SIGSTOP)
            paused = time.monotonic()
            ingest.publish_all(broker.host, broker.port, messages)
            published_s = time.monotonic() - paused
            if published_s > lease_s / 2:
                raise TimeoutError(
                    f"publishing took {published_s:.1f} s, too close to the lease: use a longer --drain-lease"
                )
            started = time.monotonic()
            cluster.signal_all(signal.SIGCONT)
            paths = [cluster.telemetry(name) for name in cluster.processes]
            wait_for(lambda: stored_readings(paths) >= len(messages), 600, "every reading stored")
            elapsed = time.monotonic() - started
        finally:
            cluster.stop()
    return {"msg_s": len(messages) / elapsed, "seconds": elapsed}


def takeover(args: argparse.Namespace, broker: Broker, work: Path, config: Path) -> list[dict[str, float]]:
    gateway = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-gateway-{uuid.uuid4().hex[:8]}")
    gateway.connect(broker.host, broker.port)
    gateway.loop_start()
    rounds: list[dict[str, float]] = []
    run = work / "takeover"
    run.mkdir()
    lease = partition_lease(0)
    try:
        with database() as state_url:
            cluster = Cluster(run, broker, state_url, config, args.lease)
            try:
                for name in ("a", "b"):
                    cluster.start(name)
                for n in range(args.rounds):
                    wait_for(cluster.balanced, 10 * args.lease, "two workers sharing the partitions")
                    holder = cluster.owners()[lease]
                    before, after = DETECTORS[(2 * n) % len(DETECTORS)], DETECTORS[(2 * n + 1) % len(DETECTORS)]
                    publish(gateway, before, "alarm")
                    wait_for(lambda d=before: alarmed(cluster.store, d), 30, "the first alarm")
                    killed_at = time.monotonic()
                    cluster.processes[holder].send_signal(signal.SIGKILL)
                    cluster.processes[holder].wait(10)
                    publish(gateway, after, "alarm")
                    wait_for(
                        lambda old=holder: cluster.owners().get(lease) not in (None, old),
                        10 * args.lease,
                        "the partition taken over",
                    )
                    took = time.monotonic() - killed_at
                    wait_for(lambda d=after: alarmed(cluster.store, d), 30, "the second alarm")
                    rounds.append({"takeover_s": took, "alarm_after_kill_s": time.monotonic() - killed_at})
                    for device in (before, after):
                        publish(gateway, device, "normal")
                    cluster.start(holder)
            finally:
                cluster.stop()
    finally:
        gateway.disconnect()
        gateway.loop_stop()
    return rounds


def run(args: argparse.Namespace) -> dict[str, Any]:
    broker = start_broker("mosquitto")
    assert isinstance(broker, MosquittoBroker)
    drains: dict[str, dict[str, float]] = {}
    paho: list[float] = []
    with tempfile.TemporaryDirectory(prefix="facmon-bench-cluster-") as tmp:
        work = Path(tmp)
        try:
            config = group_config(work)
            messages = ingest.backlog(args.messages, 1, config)
            paho.append(ingest.run_round("paho", broker, messages, work, 0, "3.1.1"))
            for workers in args.workers:
                drains[str(workers)] = drain(workers, broker, work, config, messages, args.drain_lease)
                print(f"cluster: {workers} workers drain {drains[str(workers)]['msg_s']:,.0f} msg/s", file=sys.stderr)
            paho.append(ingest.run_round("paho", broker, messages, work, 1, "3.1.1"))
            rounds = takeover(args, broker, work, config)
        finally:
            broker.stop()
    takeovers = [r["takeover_s"] for r in rounds]
    alarms = [r["alarm_after_kill_s"] for r in rounds]
    paho_rate = statistics.mean(paho)
    return {
        "benchmark": "cluster",
        "smoke": args.smoke,
        "partitions": PARTITIONS,
        "messages": args.messages,
        "drain_msg_s": {k: round(v["msg_s"]) for k, v in drains.items()},
        "paho_msg_s": round(paho_rate),
        "ratios_to_paho": {k: round(v["msg_s"] / paho_rate, 3) for k, v in drains.items()},
        "drain_lease_s": args.drain_lease,
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
    client.publish(f"facility/{SITE}/smoke/{device}/telemetry", payload, qos=1).wait_for_publish(10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="partition holders killed (default 5)")
    parser.add_argument("--lease", type=float, default=15.0, help="cluster.lease of the takeover, s (default 15)")
    parser.add_argument("--messages", type=int, default=100_000, help="the drain's backlog (default 100000)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 3], help="drain with these many workers")
    parser.add_argument("--drain-lease", type=float, default=60.0, help="cluster.lease of the drain, s (default 60)")
    parser.add_argument("--smoke", action="store_true", help="2000 messages, 1 and 2 workers, one 3 s takeover")
    args = parser.parse_args(argv)
    if args.smoke:
        args.rounds, args.lease, args.messages, args.workers, args.drain_lease = 1, 3.0, 2000, [1, 2], 9.0
    try:
        figures = run(args)
    except (SQLAlchemyError, BrokerError, TimeoutError, OSError) as exc:
        print(f"cluster: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
