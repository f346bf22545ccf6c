"""Every benchmark in bench/ runs end to end at its `--smoke` size and prints its figures as one JSON object.

Benchmarks are found by listing bench/*.py, so a new one is run here without anyone adding it. Nothing is
asserted about the figures' values: on a shared machine a time says nothing about the code.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import SQLAlchemyError

BENCH = Path(__file__).resolve().parents[2] / "bench"
BENCHMARKS = sorted(p.stem for p in BENCH.glob("*.py"))
# Generous: a smoke run takes seconds alone, but the CPUs may be shared with other test runs.
TIMEOUT_S = 300

QUERIES = ("devices", "alarms_active", "trend_pump_pressure", "trend_power_voltage")
LATENCIES = ("p50_ms", "p95_ms", "p99_ms", "max_ms")
PROBES = ("probes", "p50_ms", "p90_ms", "p99_ms", "max_ms")
# The figures each benchmark's JSON object must hold, as key paths; every object also has these three.
COMMON = ("benchmark", "smoke", "machine.cpu_count")
FIGURES: dict[str, list[str]] = {
    "alarm_latency": [
        *(f"{phase}.{key}" for phase in ("idle", "load") for key in PROBES),
        "load.p99_target_ms",
        "load.background.achieved_msg_s",
        "load.background.ingest_msg_s",
    ],
    "ingest": [
        *(f"rates_msg_s.{kind}" for kind in ("paho", "facmon", "facmon-x2")),
        # Without mosquitto_sub on PATH the benchmark leaves that consumer out, and says so.
        *(["rates_msg_s.mosquitto_sub"] if shutil.which("mosquitto_sub") else []),
        "ratios_to_paho.facmon",
        "ratios_to_paho.facmon-x2",
        "pipeline_without_mqtt_msg_s.no_rejects",
        "pipeline_without_mqtt_msg_s.rejects_10pct",
        "pipeline_rejects.stored",
    ],
    "api": [
        *(f"{layer}.{query}.{key}" for layer in ("http", "in_process") for query in QUERIES for key in LATENCIES),
        *(f"p95_ms.{query}.http" for query in QUERIES),
        "gc_full_collections.http.count",
        "data.readings",
    ],
    "cluster": [
        "drain_msg_s.1",
        "drain_msg_s.2",
        "paho_msg_s",
        "ratios_to_paho.2",
        "takeover_s.median",
        "takeover_s.max",
        "alarm_after_kill_s.median",
        "lease_s",
        "rounds",
    ],
}
# System binaries a benchmark cannot run without (the embedded broker is no stand-in for a measurement).
REQUIRES: dict[str, tuple[str, ...]] = {
    "alarm_latency": ("mosquitto",),
    "ingest": ("mosquitto",),
    "cluster": ("mosquitto", "postgresql"),
}


def installed(binary: str) -> bool:
    if binary == "postgresql":
        return postgres_reachable()
    # Debian puts mosquitto in /usr/sbin, which is not on a non-root user's PATH; facmon looks there too.
    return shutil.which(binary) is not None or any(Path(d, binary).exists() for d in ("/usr/sbin", "/usr/local/sbin"))


def postgres_reachable() -> bool:
    url = os.environ.get("FACMON_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    try:
        engine = create_engine(url)
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except (SQLAlchemyError, ImportError):
        return False
    return True


def lookup(figures: dict[str, Any], path: str) -> object:
    value: Any = figures
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            raise KeyError(path)
        value = value[key]
    return value


@pytest.mark.slow
@pytest.mark.parametrize("name", BENCHMARKS)
def test_benchmark_smoke_run_prints_its_figures(name: str) -> None:
    assert name in FIGURES, f"bench/{name}.py is new: list the keys of its figures in FIGURES"
    missing_binaries = [b for b in REQUIRES.get(name, ()) if not installed(b)]
    if missing_binaries:
        pytest.skip(f"bench/{name}.py needs {', '.join(missing_binaries)}, which is not installed")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACMON_")}

    run = subprocess.run(
        [sys.executable, str(BENCH / f"{name}.py"), "--smoke"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        env=env,
        check=False,
    )

    assert run.returncode == 0, f"exit {run.returncode}; stderr ends:\n{run.stderr[-3000:]}"
    # The convention (bench/README.md): stdout is one JSON object and nothing else.
    figures = json.loads(run.stdout)
    assert isinstance(figures, dict)
    missing = []
    for path in (*COMMON, *FIGURES[name]):
        try:
            lookup(figures, path)
        except KeyError:
            missing.append(path)
    assert not missing, f"missing from the figures: {missing}\n{run.stdout[-3000:]}"
