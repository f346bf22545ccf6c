"""API latency: the dashboard's main queries against the embedded SQLite stores holding a week of history.

The data: a synthetic facility (`facmon.simulators.load`) of 100 devices in sites of 10 (2 booster pumps, 2 power
panels, 1 lift and 5 smoke detectors each), every device reporting every 10 s for 7 days: 100 x 8640 x 7 =
6,048,000 readings in the SQLite telemetry store, written with the store's own `write()` in batches of an hour of
the whole facility. Values follow each type's daily pattern (`daily_profile`): pressure at its set point with the
pump cycling at night, phase voltages sagging under load, currents and an energy counter, lift trips, detectors'
slow drift. The state store gets 30 open alarms and 3,000 cleared ones (with their audit events) spread over the
week, on the example facility's rules, which the synthetic config carries. A data set is seeded once: its stores
are kept in a folder named by its parameters under `--data-dir`, with a manifest written last, and later runs
with the same parameters reuse it. The service's clock is set so that "now" is the end of the seeded week, so a
reused data set is as fresh to the API as a new one.

What is timed: the wall time of one request, `time.perf_counter()` around `httpx.Client.get` with one keep-alive
connection and a machine token of role viewer in `Authorization: Bearer`, against facmon's app served by uvicorn
in a thread of this process on a loopback port. The service is `facmon.cmd.service.Service` on those stores, not
started (no MQTT, no scheduler): nothing writes while the API is read. The queries:

- `devices`: `GET /api/v1/devices`, the overview (registry, latest values, status, open alarm counts);
- `alarms_active`: `GET /api/v1/alarms?state=active`;
- `trend_pump_pressure`: a pump's `pressure_bar` over the last 24 h at 1-minute means (1440 or 1441 points);
- `trend_power_voltage`: a power panel's `voltage_l1_v`, the same.

After `--warmup` untimed rounds, `--requests` rounds each issue the four requests in turn (a dashboard refresh;
interleaved, so that a change in the machine's load hits every query). Two layers, one after the other:

- `http`: on the listening socket `facmon.cmd.service.listen()` makes, after `freeze_startup_objects()`, as
  `facmon serve` and `facmon demo` do;
- `in_process`: FastAPI's TestClient (routing, auth, validation, handlers, serialisation; no sockets).

Also counted per layer: the collector's full collections, which stop the process and explain most of a p99 far
above the p95. Prints one JSON object; times are in milliseconds. Figures only: nothing is asserted.
`make bench` runs it; `--smoke` runs the same in seconds; `--help` lists the options.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import math
import os
import platform
import socket
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import repeat
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import uvicorn
import yaml
from fastapi.testclient import TestClient

from facmon.cmd.service import Service, freeze_startup_objects, listen
from facmon.config.facility import FacilityConfig
from facmon.config.registry import DeviceRegistry
from facmon.facility.model import Alarm, AlarmEvent, AlarmState, Device, DeviceType, Reading, Role
from facmon.facility.state import StateStore
from facmon.facility.telemetry import FIELDS
from facmon.ingest.storage.sqlite import SqliteTelemetryStore
from facmon.simulators.devices import daily_profile
from facmon.simulators.load import facility_config, synthetic_facility

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "facility.yaml"
DEFAULT_DATA_DIR = Path(tempfile.gettempdir()) / "facmon-bench-api"
SEED_VERSION = 2  # bump when the seeded data changes, so that older caches are not reused
MANIFEST = "seed.json"
SEEDED_FILES = ("telemetry.db", "state.db", "spool.db")
PER_SITE = 10
TARGET_P95_MS = 50
DAY_S = 86_400
HOUR_MS = 3_600_000
# `--smoke`: seconds instead of minutes, seeding included (in a fresh folder unless --data-dir says), every query
# on both layers, for `make test`.
SMOKE: dict[str, Any] = {"devices": 10, "days": 1, "requests": 5, "warmup": 1}


class BenchError(Exception):
    """Something kept the benchmark from measuring; the message is for the person who ran it."""


# --- the facility and its data --------------------------------------------------------------------------------


def facility_data(devices: int, folder: Path) -> dict[str, Any]:
    """The synthetic facility of `devices` devices, with the example's rules and its stores under `folder`."""
    if devices < 4:
        raise BenchError("--devices must be 4 or more: a site starts with 2 pumps and 2 power panels")
    per_site = min(devices, PER_SITE)
    data = synthetic_facility(-(-devices // per_site), per_site)
    last = data["sites"][-1]["buildings"][0]
    last["devices"] = last["devices"][: devices - per_site * (len(data["sites"]) - 1)]
    example = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    data["rules"] = example["rules"]
    data["storage"] = {
        "telemetry": {"backend": "sqlite", "path": str(folder / "telemetry.db")},
        "spool": {"path": str(folder / "spool.db")},
        "state_url": f"sqlite:///{folder / 'state.db'}",
    }
    data["notifications"] = {"channels": {}}
    return data


def _wander(rng: np.random.Generator, n: int, tau: float, sigma: float) -> np.ndarray:
    """A mean-reverting random walk (AR(1)) of n steps, correlated over `tau` steps, spread `sigma`."""
    a = math.exp(-1 / tau)
    kernel = math.sqrt(1 - a * a) * sigma * a ** np.arange(int(5 * tau) + 1)
    return np.convolve(rng.standard_normal(n + len(kernel) - 1), kernel, mode="valid")


def series(device: Device, ts: np.ndarray, profile: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Plausible values of every field a device of its type sends, one per time stamp (ms)."""
    rng = np.random.default_rng([seed, zlib.crc32(device.id.encode())])
    n = len(ts)
    step_s = (ts[1] - ts[0]) / 1000 if n > 1 else 10.0
    t_s = (ts - ts[0]) / 1000
    out: dict[str, np.ndarray] = {}
    if device.type is DeviceType.PUMP:
        setpoint = float(device.nominal.get("pressure_bar", 4.0))
        demand = (2.0 + 13.0 * profile) * (1 + rng.normal(0, 0.1) + _wander(rng, n, 600 / step_s, 0.05))
        # At low demand the pump stands while the vessel feeds the building: the pressure falls from cut-out to
        # cut-in, then the pump runs again (at least 21 minutes) and lifts it back.
        phase = (t_s + rng.uniform(0, 2400)) % 2400
        low = demand < 3.0
        standing = low & (phase >= 1260)
        band = 0.075 * setpoint
        pressure = np.where(standing, setpoint + band - 2 * band * (phase - 1260) / 1140, setpoint)
        pressure = np.where(low & ~standing, setpoint + band * phase / 1260, pressure)
        out["pressure_bar"] = np.clip(pressure + rng.normal(0, 0.02, n), 0, 100).round(3)
        out["inlet_pressure_bar"] = np.clip(1.5 * (1 - 0.1 * profile) + rng.normal(0, 0.02, n), 0, 100).round(3)
        out["flow_m3h"] = np.maximum(0, demand * (1 + rng.normal(0, 0.02, n))).round(2)
        out["pump_running"] = ~standing
    elif device.type is DeviceType.POWER:
        nominal = float(device.nominal.get("voltage_v", 230.0))
        load = (0.2 + 0.6 * profile) * (1 + _wander(rng, n, 900 / step_s, 0.05))
        grid = _wander(rng, n, 1800 / step_s, 0.004)
        kw = np.zeros(n)
        for phase_no in (1, 2, 3):
            share = rng.uniform(0.95, 1.05)
            offset = rng.uniform(-0.002, 0.002)
            volts = nominal * (1.01 + grid + offset - 0.02 * load * share) + rng.normal(0, 0.25, n)
            amps = np.maximum(0, 400 * load * share + rng.normal(0, 1, n))
            out[f"voltage_l{phase_no}_v"] = volts.round(1)
            out[f"current_l{phase_no}_a"] = amps.round(1)
            kw += volts * amps * 0.95 / 1000
        out["frequency_hz"] = (50 + _wander(rng, n, 60 / step_s, 0.007)).round(3)
        out["energy_kwh"] = (120_000 + rng.uniform(0, 5000) + np.cumsum(kw * step_s / 3600)).round(1)
    elif device.type is DeviceType.ELEVATOR:
        draw = rng.random(n)
        busy = 0.05 + 0.45 * profile
        running = draw < busy * 0.6
        doors = ~running & (draw < busy)
        state = np.where(running, "running", np.where(doors, "door_open", "idle"))
        out["state"] = state
        out["floor"] = rng.integers(1, 21, n)
        out["direction"] = np.where(running, np.where(rng.random(n) < 0.5, "up", "down"), "none")
        out["entrapment"] = np.zeros(n, dtype=bool)
        out["alarm_button"] = np.zeros(n, dtype=bool)
        starts = running & ~np.concatenate(([False], running[:-1]))
        out["trips"] = int(rng.integers(10_000, 90_000)) + np.cumsum(starts)
    else:
        days = t_s / DAY_S
        contamination = rng.uniform(5, 40) + 0.02 * days
        out["state"] = np.full(n, "normal")
        clean_air = np.clip(0.12 + 0.002 * contamination + _wander(rng, n, 600 / step_s, 0.02), 0.08, 0.35)
        out["obscuration_pct_per_m"] = np.clip(clean_air + rng.normal(0, 0.01, n), 0, 100).round(3)
        out["battery_pct"] = np.clip(rng.uniform(60, 100) - 0.05 * days, 0, 100).round(1)
        out["contamination_pct"] = np.clip(contamination, 0, 100).round(1)
    missing = [f.name for f in FIELDS[device.type].values() if f.required and f.name not in out]
    if missing:
        raise BenchError(f"{device.type} readings lack the required {missing}")
    return out


def seed_telemetry(
    store: SqliteTelemetryStore, devices: list[Device], end_ms: int, days: int, interval_s: int, seed: int
) -> int:
    """Write `days` of readings of every device, ending at `end_ms`; returns how many were written."""
    interval_ms = interval_s * 1000
    n = days * DAY_S // interval_s
    start_ms = end_ms - n * interval_ms
    slots = np.arange(n, dtype=np.int64)
    # The facility's hour (UTC here) decides the activity: one profile value per minute of the day.
    by_minute = np.array([daily_profile(minute / 60) for minute in range(24 * 60)])
    columns: list[tuple[str, np.ndarray, list[str], list[np.ndarray]]] = []
    for i, device in enumerate(devices):
        # Each device's own phase within the interval, so that time stamps are not shared between devices.
        offset = (zlib.crc32(device.id.encode()) + i) % interval_ms
        ts = start_ms + offset + slots * interval_ms
        profile = by_minute[(ts // 60_000) % (24 * 60)]
        values = series(device, ts, profile, seed)
        columns.append((device.id, ts, list(values), list(values.values())))
    # A batch is an hour of the whole facility. Within it, device after device: each device's rows go to the end
    # of its own key range either way, so the file's layout is that of readings written as they arrive.
    # Values become Python's (float, int, bool, str) a batch at a time: sqlite3 binds no numpy scalars.
    per_batch = max(1, HOUR_MS // interval_ms)
    written = 0
    # The collector would walk every reading of a batch again and again; they are freed by reference counting.
    gc.disable()
    try:
        for lo in range(0, n, per_batch):
            hi = min(n, lo + per_batch)
            batch: list[Reading] = []
            for device_id, ts, names, arrays in columns:
                rows = zip(*(a[lo:hi].tolist() for a in arrays), strict=True)
                fields = (dict(zip(names, row, strict=True)) for row in rows)
                batch.extend(map(Reading, repeat(device_id), ts[lo:hi].tolist(), fields, range(lo, hi)))
            store.write(batch)
            written += len(batch)
    finally:
        gc.enable()
    return written


def seed_alarms(
    state: StateStore, devices: list[Device], config: FacilityConfig, end: datetime, days: int, counts: tuple[int, int]
) -> None:
    """`counts` (active, cleared) alarms: cleared ones spread over the week (raised, acknowledged, cleared), open
    ones raised in the last day, each with its audit events, on the config's rules at a severity of their levels."""
    active, cleared = counts
    rng = np.random.default_rng(7)
    rules = {d.id: [r for r in config.rules if r.enabled and r.select.matches(d)] for d in devices}
    candidates = [d for d in devices if rules[d.id]]
    # The open ones: unacknowledged, acknowledged and returned-unacknowledged in turn.
    open_kinds = ("active_unacked", "active_acked", "returned_unacked")
    kinds = ["cleared"] * cleared + [open_kinds[i % 3] for i in range(active)]
    with state.begin() as tx:
        for kind in kinds:
            device = candidates[int(rng.integers(len(candidates)))]
            rule = rules[device.id][int(rng.integers(len(rules[device.id])))]
            severity = rule.levels[int(rng.integers(len(rule.levels)))].severity
            ago = float(rng.uniform(900, DAY_S if kind != "cleared" else days * DAY_S - 3600))
            raised = end - timedelta(seconds=ago)
            message = f"{rule.name}: {device.name}"
            alarm = Alarm(
                0, rule.id, device.id, device.site, severity, AlarmState.ACTIVE_UNACKED, raised, None, message
            )
            alarm = tx.insert_alarm(replace(alarm, updated_at=raised, latched=rule.latched))
            events = [AlarmEvent(alarm.id, raised, "raised", alarm.state, severity, note=alarm.message)]
            if kind in ("cleared", "active_acked"):
                acked = raised + timedelta(seconds=float(rng.uniform(20, 600)))
                alarm = replace(alarm, state=AlarmState.ACTIVE_ACKED, acked_at=acked, acked_by="operator")
                alarm = replace(alarm, updated_at=acked)
                events.append(AlarmEvent(alarm.id, acked, "acknowledged", alarm.state, severity, "operator"))
            if kind == "cleared":
                back = (alarm.acked_at or raised) + timedelta(seconds=float(rng.uniform(5, 3000)))
                alarm = replace(alarm, state=AlarmState.CLEARED, returned_at=back, cleared_at=back, updated_at=back)
                events.append(AlarmEvent(alarm.id, back, "cleared", alarm.state, severity))
            elif kind == "returned_unacked":
                back = raised + timedelta(seconds=float(rng.uniform(5, 600)))
                alarm = replace(alarm, state=AlarmState.RETURNED_UNACKED, returned_at=back, updated_at=back)
                events.append(AlarmEvent(alarm.id, back, "returned", alarm.state, severity))
            tx.update_alarm(alarm)
            for event in events:
                tx.add_alarm_event(event)


def seed_key(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "version": SEED_VERSION,
        "devices": args.devices,
        "days": args.days,
        "interval_s": args.interval,
        "active_alarms": args.active_alarms,
        "cleared_alarms": args.cleared_alarms,
        "seed": args.seed,
    }


def prepare(args: argparse.Namespace) -> tuple[Path, dict[str, Any], bool]:
    """The folder of this data set, its manifest, and whether it was seeded now (False: reused)."""
    key = seed_key(args)
    name = "d{devices}-{days}d-{interval_s}s-a{active_alarms}-c{cleared_alarms}-s{seed}".format(**key)
    folder = Path(args.data_dir) / name
    manifest_path = folder / MANIFEST
    if manifest_path.exists() and not args.reseed:
        manifest: dict[str, Any] = json.loads(manifest_path.read_text(encoding="utf-8"))
        if manifest.get("key") == key:
            return folder, manifest, False
    # A partial or different seed: start over. Only the files this benchmark writes are removed.
    manifest_path.unlink(missing_ok=True)
    for name in SEEDED_FILES:
        for suffix in ("", "-wal", "-shm", "-journal"):
            (folder / f"{name}{suffix}").unlink(missing_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    end = datetime.now(UTC).replace(microsecond=0)
    config = facility_config(facility_data(args.devices, folder), env={})
    devices = list(DeviceRegistry.from_config(config))
    started = time.perf_counter()
    store = SqliteTelemetryStore(folder / "telemetry.db", devices, retention_ms=400 * DAY_S * 1000)
    try:
        readings = seed_telemetry(store, devices, int(end.timestamp() * 1000), args.days, args.interval, args.seed)
        telemetry_s = time.perf_counter() - started
        # Fold the write-ahead log into the database, so that every run reads the same file layout.
        store._conn().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        store.close()
    alarms_started = time.perf_counter()
    state = StateStore.open(config.storage.state_url)
    try:
        seed_alarms(state, devices, config, end, args.days, (args.active_alarms, args.cleared_alarms))
    finally:
        state.close()
    manifest = {
        "key": key,
        "end": end.isoformat(),
        "readings": readings,
        "seed_seconds": round(time.perf_counter() - started, 1),
        "seed_telemetry_seconds": round(telemetry_s, 1),
        "seed_alarms_seconds": round(time.perf_counter() - alarms_started, 1),
    }
    manifest_path.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return folder, manifest, True


# --- measuring -------------------------------------------------------------------------------------------------


class ShiftedClock:
    """The wall clock moved so that it starts at `at`: the seeded week always ends just now."""

    def __init__(self, at: datetime) -> None:
        self._offset = at - datetime.now(UTC)

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset


@contextlib.contextmanager
def serving(service: Service, sock: socket.socket) -> Iterator[str]:
    """The service's app on uvicorn in a thread, on a listening loopback socket, until the block ends."""
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        service.app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="bench-http", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise BenchError("uvicorn did not start within 10 s")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def queries(devices: list[Device]) -> dict[str, str]:
    pump = next(d for d in devices if d.type is DeviceType.PUMP)
    power = next(d for d in devices if d.type is DeviceType.POWER)
    # 24 h at 1 m touches 1441 windows unless now is on the minute: more than the default max_points of 1000.
    trend = "/api/v1/devices/{}/telemetry?field={}&start=-24h&every=1m&agg=mean&max_points=1500"
    return {
        "devices": "/api/v1/devices",
        "alarms_active": "/api/v1/alarms?state=active",
        "trend_pump_pressure": trend.format(pump.id, "pressure_bar"),
        "trend_power_voltage": trend.format(power.id, "voltage_l1_v"),
    }


Get = Callable[[str], Any]


class FullCollections:
    """Times the collector's full (generation 2) collections while the block runs: they stop every thread."""

    def __init__(self) -> None:
        self.pauses_ms: list[float] = []
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses_ms.append((time.perf_counter() - self._started) * 1000)

    def __enter__(self) -> FullCollections:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *_exc: object) -> None:
        gc.callbacks.remove(self._callback)

    def figures(self) -> dict[str, Any]:
        pauses = self.pauses_ms
        return {
            "count": len(pauses),
            "median_ms": round(statistics.median(pauses), 1) if pauses else None,
            "max_ms": round(max(pauses), 1) if pauses else None,
        }


def measure(
    get: Get, paths: dict[str, str], warmup: int, rounds: int, collections: FullCollections
) -> dict[str, dict[str, Any]]:
    """`rounds` rounds of one request per query, after `warmup` untimed rounds; the figures per query."""
    times: dict[str, list[float]] = {name: [] for name in paths}
    with_collection: Counter[str] = Counter()
    last: dict[str, Any] = {}
    for r in range(warmup + rounds):
        for name, path in paths.items():
            before = len(collections.pauses_ms)
            started = time.perf_counter()
            response = get(path)
            elapsed = time.perf_counter() - started
            if response.status_code != 200:
                raise BenchError(f"GET {path} answered {response.status_code}: {response.text[:300]}")
            if r >= warmup:
                times[name].append(elapsed * 1000)
                with_collection[name] += len(collections.pauses_ms) > before
            last[name] = response
    out: dict[str, dict[str, Any]] = {}
    for name, path in paths.items():
        body = last[name].json()
        figures = summary(times[name])
        figures["meets_target"] = figures["p95_ms"] <= TARGET_P95_MS
        figures["with_full_collection"] = with_collection[name]
        figures["response_bytes"] = len(last[name].content)
        if "points" in body:
            figures["points"] = len(body["points"])
        else:
            figures["items"] = len(body["items"])
            figures["total"] = body["total"]
        out[name] = {"path": path, **figures}
    return out


def summary(latencies: list[float]) -> dict[str, Any]:
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return {
        "requests": len(latencies),
        "p50_ms": round(cuts[49], 2),
        "p95_ms": round(cuts[94], 2),
        "p99_ms": round(cuts[98], 2),
        "max_ms": round(max(latencies), 2),
    }


def folder_mb(folder: Path, name: str) -> float:
    return round(sum(p.stat().st_size for p in folder.glob(f"{name}*")) / 1e6, 1)


def run(args: argparse.Namespace) -> dict[str, Any]:
    load_average = round(os.getloadavg()[0], 2)
    folder, manifest, seeded = prepare(args)
    end = datetime.fromisoformat(manifest["end"])
    config = facility_config(facility_data(args.devices, folder), env={})
    opened = time.perf_counter()
    service = Service(config, clock=ShiftedClock(end), notifiers=[])
    open_s = time.perf_counter() - opened
    devices = list(service.registry)
    paths = queries(devices)
    results: dict[str, dict[str, dict[str, Any]]] = {}
    full_collections: dict[str, dict[str, Any]] = {}
    token_id = None
    try:
        token, row = service.accounts.add_token("bench", Role.VIEWER, at=service.clock.now())
        token_id = row.id
        headers = {"Authorization": f"Bearer {token}"}
        # As `facmon serve` does: startup objects frozen, the socket from facmon.cmd.service.listen.
        freeze_startup_objects()
        with (
            serving(service, listen("127.0.0.1", 0)) as url,
            httpx.Client(base_url=url, headers=headers, timeout=60) as client,
        ):
            with FullCollections() as collections:
                results["http"] = measure(client.get, paths, args.warmup, args.requests, collections)
            full_collections["http"] = collections.figures()
        if not args.no_in_process:
            with TestClient(service.app, headers=headers) as test_client, FullCollections() as collections:
                results["in_process"] = measure(test_client.get, paths, args.warmup, args.requests, collections)
            full_collections["in_process"] = collections.figures()
    finally:
        if token_id is not None:
            service.accounts.revoke(token_id, service.clock.now())
        service.spool.close()
        service.telemetry.close()
        service.state.close()
    out: dict[str, Any] = {
        "benchmark": "api_latency",
        "smoke": args.smoke,
        "target_p95_ms": TARGET_P95_MS,
        "data": {
            "devices": len(devices),
            "devices_by_type": dict(Counter(d.type.value for d in devices)),
            "days": args.days,
            "interval_s": args.interval,
            "readings": manifest["readings"],
            "active_alarms": args.active_alarms,
            "cleared_alarms": args.cleared_alarms,
            "telemetry_db_mb": folder_mb(folder, "telemetry.db"),
            "state_db_mb": folder_mb(folder, "state.db"),
            "folder": str(folder),
            "seeded_now": seeded,
            "seed_seconds": manifest["seed_seconds"],
            "seed_telemetry_seconds": manifest["seed_telemetry_seconds"],
            "seed_alarms_seconds": manifest["seed_alarms_seconds"],
            "service_open_seconds": round(open_s, 2),
        },
        "method": {
            "rounds": args.requests,
            "warmup_rounds": args.warmup,
            "per_round": "one request of each query in turn, sequentially",
            "http": f"uvicorn {uvicorn.__version__} (h11, asyncio) in a thread of this process on the socket "
            "facmon.cmd.service.listen() makes, as facmon serve does; httpx "
            f"{httpx.__version__}, one keep-alive connection",
            "in_process": "skipped" if args.no_in_process else "FastAPI TestClient on the same app: no sockets",
        },
        "p95_ms": {query: {layer: figures[query]["p95_ms"] for layer, figures in results.items()} for query in paths},
        **results,
        # Each stops the process while it walks every object: the usual cause of a p99 far above the p95.
        "gc_full_collections": full_collections,
    }
    out["machine"] = {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "load_average_1m_before": load_average,
    }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=100, help="devices in the facility (default 100)")
    parser.add_argument("--days", type=int, default=7, help="days of history (default 7)")
    parser.add_argument("--interval", type=int, default=10, help="seconds between a device's readings (default 10)")
    parser.add_argument("--requests", type=int, default=200, help="timed requests per query (default 200)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed rounds first (default 20)")
    parser.add_argument("--active-alarms", type=int, default=30, help="open alarms in the state store (default 30)")
    parser.add_argument("--cleared-alarms", type=int, default=3000, help="cleared alarms (default 3000)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the synthetic values")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help=f"seeded stores (default {DEFAULT_DATA_DIR}; with --smoke a temporary folder)",
    )
    parser.add_argument("--reseed", action="store_true", help="seed again even if the data set is there")
    parser.add_argument("--no-in-process", action="store_true", help="skip the in-process (TestClient) figures")
    smoke = " ".join(f"--{name.replace('_', '-')} {value}" for name, value in SMOKE.items())
    parser.add_argument("--smoke", action="store_true", help=f"seconds, not minutes, the same path: {smoke}")
    args = parser.parse_args(argv)
    if args.smoke:  # smaller defaults; options given on the command line still win
        parser.set_defaults(**SMOKE, data_dir=None)
        args = parser.parse_args(argv)
    if args.requests < 2 or args.warmup < 0 or args.days < 1 or not 1 <= args.interval <= 3600:
        parser.error("--requests must be 2 or more, --warmup 0 or more, --days 1 or more, --interval 1 to 3600")
    if args.active_alarms < 0 or args.cleared_alarms < 0:
        parser.error("--active-alarms and --cleared-alarms must be 0 or more")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        with contextlib.ExitStack() as stack:
            if args.data_dir is None:
                args.data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="facmon-bench-api-")))
            result = run(args)
    except BenchError as exc:
        print(f"api: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("api: interrupted", file=sys.stderr)
        return 130
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
