"""`facmon serve` against an external broker and stores, stopped with SIGTERM as a container runtime would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import httpx

from facmon.cmd.broker import Broker, free_port
from facmon.facility.accounts import Accounts
from facmon.facility.model import Role
from facmon.facility.state import StateStore
from tests.conftest import EXAMPLE
from tests.publishing import Gateway
from tests.waiting import eventually


def test_serve_ingests_and_stops_cleanly_on_sigterm(tmp_path: Path, mqtt_broker: Broker) -> None:
    port = free_port()
    env = {
        **os.environ,
        "FACMON_MQTT__URL": mqtt_broker.url,
        "FACMON_MQTT__CLIENT_ID": "facmon-serve-test",
        "FACMON_API__PORT": str(port),
        "FACMON_STORAGE__STATE_URL": f"sqlite:///{tmp_path / 'state.db'}",
        "FACMON_STORAGE__TELEMETRY__PATH": str(tmp_path / "telemetry.db"),
    }
    # A token for this test, made in the state store the service will use.
    store = StateStore.open(env["FACMON_STORAGE__STATE_URL"])
    token, _ = Accounts(store).add_token("serve-test", Role.VIEWER, at=datetime.now(UTC))
    store.close()
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        serve = subprocess.Popen(
            [sys.executable, "-m", "facmon", "serve", "--config", str(EXAMPLE)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    base = f"http://127.0.0.1:{port}"
    gateway = Gateway(mqtt_broker)
    try:

        def ready() -> bool:
            try:
                return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        eventually(ready, timeout=30, what=f"ready; log:\n{log.read_text()}")
        gateway.publish("elevator", "lift-B2", {"state": "fault", "fault_code": "E31", "floor": 4})
        with httpx.Client(base_url=base, timeout=2, headers={"Authorization": f"Bearer {token}"}) as api:
            alarms = eventually(lambda: api.get("/api/v1/alarms?device=lift-B2").json()["items"])
        assert alarms[0]["rule"] == "elevator-fault"
    finally:
        gateway.close()
        serve.send_signal(signal.SIGTERM)
        code = serve.wait(30)
    output = log.read_text()
    assert code == 0, output
    assert "Traceback" not in output
