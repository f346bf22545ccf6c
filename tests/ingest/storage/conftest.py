"""Every telemetry backend for the contract suite: SQLite in a tmp dir, a real influxd 1.x started here on free
loopback ports, and InfluxDB 2 where INFLUXDB_URL, INFLUXDB_TOKEN and INFLUXDB_ORG point at one."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import urllib3

from facmon.config.registry import DeviceRegistry
from facmon.config.storage import TelemetryStorageConfig
from facmon.facility.model import Device, DeviceType
from facmon.ingest.storage import TelemetryStore, open_telemetry_store
from tests.waiting import eventually

INFLUXD = shutil.which("influxd") or ("/usr/bin/influxd" if Path("/usr/bin/influxd").exists() else None)

# Ids that would change a query if they were pasted into it; registered, so the query reaches the server.
NASTY_INFLUXQL = "x' OR '1'='1"
NASTY_FLUX = 'x") |> drop()'

DEVICES = [
    Device("pump-1", DeviceType.PUMP, "riverside", "A", "Booster pump 1"),
    Device("pump-2", DeviceType.PUMP, "riverside", "A", "Booster pump 2"),
    Device("power-1", DeviceType.POWER, "riverside", "B", "Main meter"),
    Device("lift-1", DeviceType.ELEVATOR, "riverside", "A", "Lift 1"),
    Device("smoke-1", DeviceType.SMOKE, "riverside", "A", "Detector 1"),
    Device("A-1.x_y", DeviceType.PUMP, "riverside", "A", "Odd but allowed id"),
    # A site and building that need escaping as tag values.
    Device("pump-odd", DeviceType.PUMP, "north site", "b,1=2 x", "Pump in an oddly named place"),
    Device(NASTY_INFLUXQL, DeviceType.PUMP, "riverside", "A", "Nasty InfluxQL"),
    Device(NASTY_FLUX, DeviceType.PUMP, "riverside", "A", "Nasty Flux"),
]

_HTTP = urllib3.PoolManager()

BACKENDS = ["sqlite", "influxdb-v1", "influxdb-v2"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Influxd:
    url: str
    log: Path

    def query(self, influxql: str, database: str | None = None) -> dict[str, Any]:
        fields = {"q": influxql, "epoch": "ms"} | ({"db": database} if database else {})
        response = _HTTP.request("POST", f"{self.url}/query", fields=fields, encode_multipart=False, timeout=10)
        assert response.status == 200, response.data
        result: dict[str, Any] = orjson.loads(response.data)
        return result


_INFLUXD_CONFIG = """\
reporting-disabled = true
bind-address = "127.0.0.1:{rpc}"

[meta]
  dir = "{base}/meta"

[data]
  dir = "{base}/data"
  wal-dir = "{base}/wal"
  query-log-enabled = false

[monitor]
  store-enabled = false

[http]
  bind-address = "127.0.0.1:{http}"
  log-enabled = false

[continuous_queries]
  enabled = false
"""


@pytest.fixture(scope="session")
def influxd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Influxd]:
    """influxd 1.x with a throwaway config and data dir, on free loopback ports."""
    if INFLUXD is None:
        pytest.skip("influxd is not installed (Debian package influxdb; `make system-deps` installs it as root)")
    base = tmp_path_factory.mktemp("influxd")
    http = free_port()
    config = base / "influxdb.conf"
    config.write_text(_INFLUXD_CONFIG.format(base=base, rpc=free_port(), http=http))
    log_path = base / "influxd.log"
    # influxd reads INFLUXDB_* variables as settings: keep the test's own (INFLUXDB_URL...) away from it.
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFLUXDB_")}
    with log_path.open("wb") as log:
        process = subprocess.Popen([INFLUXD, "-config", str(config)], stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{http}"

    def answers_ping() -> bool:
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"influxd exited with {process.returncode}:\n{tail}")
        try:
            return urllib3.request("GET", f"{url}/ping", timeout=1, retries=False).status == 204
        except urllib3.exceptions.HTTPError:
            return False

    try:
        eventually(answers_ping, timeout=30, what=f"influxd answering /ping at {url}")
        yield Influxd(url, log_path)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def influx_v1_database(influxd: Influxd) -> Iterator[str]:
    name = f"facmon_test_{uuid.uuid4().hex[:12]}"
    influxd.query(f'CREATE DATABASE "{name}"')
    yield name
    influxd.query(f'DROP DATABASE "{name}"')


@pytest.fixture
def influx_v2_bucket() -> Iterator[tuple[str, str, str, str]]:
    """A fresh bucket on the InfluxDB 2 named by the environment: (url, token, org, bucket)."""
    url, token, org = (os.environ.get(k) for k in ("INFLUXDB_URL", "INFLUXDB_TOKEN", "INFLUXDB_ORG"))
    if not (url and token and org):
        pytest.skip("no InfluxDB 2: set INFLUXDB_URL, INFLUXDB_TOKEN and INFLUXDB_ORG to run these against one")
    from influxdb_client.client.influxdb_client import InfluxDBClient

    name = f"facmon_test_{uuid.uuid4().hex[:12]}"
    with InfluxDBClient(url=url, token=token, org=org) as client:
        buckets = client.buckets_api()
        bucket = buckets.create_bucket(bucket_name=name, org=org)
        try:
            yield url, token, org, name
        finally:
            buckets.delete_bucket(bucket)


@pytest.fixture
def registry() -> DeviceRegistry:
    return DeviceRegistry(list(DEVICES))


def store_config(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> TelemetryStorageConfig:
    if backend == "sqlite":
        return TelemetryStorageConfig(backend="sqlite", path=tmp_path / "telemetry.db")
    if backend == "influxdb-v1":
        influxd: Influxd = request.getfixturevalue("influxd")
        database: str = request.getfixturevalue("influx_v1_database")
        return TelemetryStorageConfig(
            backend="influxdb", dialect="v1", url=influxd.url, database=database, timeout=timedelta(seconds=10)
        )
    url, token, org, bucket = request.getfixturevalue("influx_v2_bucket")
    return TelemetryStorageConfig.model_validate(
        {"backend": "influxdb", "dialect": "v2", "url": url, "token": token, "org": org, "bucket": bucket}
    )


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def store(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path, registry: DeviceRegistry
) -> Iterator[TelemetryStore]:
    """The telemetry store of each backend, opened as the service opens it: from `storage.telemetry`."""
    telemetry = open_telemetry_store(store_config(request, backend, tmp_path), registry)
    yield telemetry
    telemetry.close()
