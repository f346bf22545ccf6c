"""Load mode: a synthetic facility, its config for `facmon serve`, and its telemetry through a real broker."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

from facmon.cmd.broker import Broker
from facmon.config.loader import load_config
from facmon.config.registry import DeviceRegistry
from facmon.facility.model import DeviceType
from facmon.ingest.decode import Decoder
from facmon.simulators.load import site_mix, synthetic_facility
from tests.simulators.listening import Listener, readings
from tests.waiting import eventually

LAST_LINE = re.compile(r"^published (\d+) messages to (\S+), (\d+) msg/s$")


def facmon(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "facmon", *args], capture_output=True, text=True, timeout=60, env=env, check=False
    )


def test_each_site_has_two_pumps_two_panels_then_lifts_and_detectors() -> None:
    assert Counter(site_mix(10)) == {
        DeviceType.PUMP: 2,
        DeviceType.POWER: 2,
        DeviceType.ELEVATOR: 1,
        DeviceType.SMOKE: 5,
    }
    assert Counter(site_mix(28)) == {
        DeviceType.PUMP: 2,
        DeviceType.POWER: 2,
        DeviceType.ELEVATOR: 4,
        DeviceType.SMOKE: 20,
    }
    assert site_mix(3) == [DeviceType.PUMP, DeviceType.PUMP, DeviceType.POWER]


def test_ids_are_unique_and_stable() -> None:
    data = synthetic_facility(3, 50)
    ids = [d["id"] for s in data["sites"] for b in s["buildings"] for d in b["devices"]]
    assert len(ids) == len(set(ids)) == 150
    assert synthetic_facility(3, 50) == data
    assert ids[:5] == ["site-001-pump-1", "site-001-pump-2", "site-001-panel-1", "site-001-panel-2", "site-001-lift-1"]


def test_load_publishes_what_the_written_config_accepts(tmp_path: Path, mqtt_broker: Broker) -> None:
    prefix = f"load-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "FACMON_MQTT__TOPIC_PREFIX": prefix}
    shape = ["simulate", "--load", "--sites", "2", "--devices", "10", "--url", mqtt_broker.url]
    path = tmp_path / "load.yaml"

    written = facmon(*shape, "--write-config", str(path), env=env)
    assert written.returncode == 0, written.stderr
    config = load_config(path, env={"FACMON_MQTT__TOPIC_PREFIX": prefix})
    registry = DeviceRegistry.from_config(config)
    assert len(registry) == 20 and config.mqtt.url == mqtt_broker.url and config.rules == []

    listener = Listener(mqtt_broker, prefix)
    try:
        run = facmon(*shape, "--rate", "50", "--duration", "2", env=env)
        assert run.returncode == 0, run.stderr
        found = LAST_LINE.match(run.stdout.strip().splitlines()[-1])
        assert found is not None, run.stdout
        published = int(found[1])
        assert published > 0 and found[2] == mqtt_broker.url
        eventually(lambda: len(listener.telemetry()) == published, what="every published message")
        eventually(
            lambda: (
                {t for t, p, _ in listener.messages if t.endswith("/status") and p == b"offline"}
                == {f"{prefix}/site-001/gateway/sim-site-001/status", f"{prefix}/site-002/gateway/sim-site-002/status"}
            ),
            what="each site's gateway offline at the end",
        )
    finally:
        listener.close()

    decoder = Decoder(
        registry,
        topic_prefix=prefix,
        max_payload_bytes=config.ingest.max_payload_bytes,
        max_future_skew_ms=int(config.ingest.max_future_skew.total_seconds() * 1000),
    )
    now_ms = time.time_ns() // 1_000_000
    seen: set[str] = set()
    for topic, payload, received_ms in listener.telemetry():
        decoded = decoder.decode(topic, payload, received_ms)
        assert decoded.rejects == [], decoded.rejects
        assert all("seq" in r and r["ts"] <= now_ms for r in readings(payload))
        seen.update(r.device_id for r in decoded.readings)
    assert seen == {d.id for d in registry}
