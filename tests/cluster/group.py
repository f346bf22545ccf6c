"""A property group for the cluster tests: the example facility's rules and policies over several sites.

The sites are the synthetic load facility's (`site-001` …, each with pumps, panels, lifts and detectors); with
8 partitions, sites 1 to 7 fall into seven different partitions.
"""

from __future__ import annotations

from pathlib import Path

import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from facmon.cmd.broker import Broker
from facmon.config.facility import FacilityConfig
from facmon.config.loader import load_config
from facmon.ingest.subscriber import partition_client_id
from facmon.simulators.load import synthetic_facility
from tests.conftest import EXAMPLE


def group_config(path: Path, sites: int = 4, devices: int = 8) -> Path:
    """Write the group's config file at `path`; the environment points it at a broker and stores."""
    example = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    data = {**example, "sites": synthetic_facility(sites, devices)["sites"]}
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def cluster_config(tmp_path: Path, broker: Broker, state_url: str, name: str, **env: str) -> FacilityConfig:
    """Worker `name`'s config of the group in a cluster with a 3 s lease; its session names from the tmp dir."""
    return load_config(
        group_config(tmp_path / "group.yaml"),
        env={
            "FACMON_MQTT__URL": broker.url,
            # The partitions' sessions are named after this, the same on every worker: whoever holds one resumes it.
            "FACMON_MQTT__CLIENT_ID": f"facmon-cluster-{tmp_path.name[-12:]}",
            "FACMON_STORAGE__TELEMETRY__PATH": str(tmp_path / "telemetry.db"),
            "FACMON_STORAGE__STATE_URL": state_url,
            "FACMON_STORAGE__SPOOL__PATH": str(tmp_path / f"spool-{name}.db"),
            "FACMON_CLUSTER__ENABLED": "true",
            "FACMON_CLUSTER__LEASE": "3s",
            "FACMON_CLUSTER__WORKER": name,
            **env,
        },
    )


def pump(site: int) -> str:
    return f"site-{site:03d}-pump-1"


def detector(site: int, n: int = 1) -> str:
    return f"site-{site:03d}-smoke-{n:03d}"


def forget_sessions(broker: Broker, client_id: str, partitions: int = 8) -> None:
    """End the partitions' persistent sessions at the broker: left behind, they would queue every later test's
    messages for the group's sites."""
    for partition in range(partitions):
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=partition_client_id(client_id, partition), clean_session=True
        )
        client.connect(broker.host, broker.port)
        client.loop_start()
        client.disconnect()
        client.loop_stop()
