"""Through the real broker, with the service's own ticker running.

Pipe burst at 02:00: pressure falls 2 bar in 20 s → critical, latched burst alarm → P1 work order.
Gateway of lift B2 dies: no data → communication-lost alarm → it comes back → the alarm returns.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from facmon.cmd.broker import Broker
from facmon.config.loader import load_config
from tests.conftest import EXAMPLE, example_config
from tests.scenarios.conftest import Live, running
from tests.waiting import eventually


def rule_index(rule_id: str) -> int:
    return next(i for i, rule in enumerate(load_config(EXAMPLE, env={}).rules) if rule.id == rule_id)


@pytest.fixture
def live(tmp_path: Path, mqtt_broker: Broker) -> Iterator[Live]:
    config = example_config(
        tmp_path,
        mqtt_broker,
        FACMON_ALARMS__TICK="0.1s",
        # A lift's gateway reports every few seconds; give up on it after 2 s instead of 5 min.
        **{f"FACMON_RULES__{rule_index('comm-lost')}__LEVELS__0__NO_DATA": "2s"},
    )
    with running(config, mqtt_broker) as started:
        yield started


def test_a_fast_pressure_fall_raises_the_burst_alarm(live: Live) -> None:
    _, api, gateway = live
    now = int(time.time() * 1000)
    for i, pressure in enumerate((4.0, 4.0, 3.4, 2.7, 2.0)):
        gateway.publish("pump", "pump-2", {"pressure_bar": pressure, "ts": now - 20_000 + i * 5_000})

    def burst() -> dict | None:
        items = api.get("/api/v1/alarms?device=pump-2").json()["items"]
        return next((a for a in items if a["rule"] == "pipe-burst"), None)

    alarm = eventually(burst, what="the burst alarm")
    assert alarm["severity"] == "critical" and alarm["latched"]
    assert alarm["message"].startswith(
        "Pressure falling fast (burst pipe?): pressure_bar fell by 1.3 to 2.7 within 30 s"
    )
    orders = eventually(lambda: api.get("/api/v1/work-orders").json()["items"])
    assert any(o["alarm_id"] == alarm["id"] and o["priority"] == "P1" for o in orders)


def test_a_silent_device_raises_communication_lost_and_clears_when_it_returns(live: Live) -> None:
    _, api, gateway = live
    gateway.publish("elevator", "lift-B2", {"state": "idle", "floor": 1})

    def lost() -> dict | None:
        items = api.get("/api/v1/alarms?device=lift-B2&state=all").json()["items"]
        return next((a for a in items if a["rule"] == "comm-lost" and a["state"] == "active_unacked"), None)

    alarm = eventually(lost, timeout=10, what="communication lost")
    assert alarm["message"] == "No data from device: no data for 2 s"
    gateway.publish("elevator", "lift-B2", {"state": "idle", "floor": 1})
    back = eventually(
        lambda: api.get(f"/api/v1/alarms/{alarm['id']}").json()["state"] == "returned_unacked",
        what="the alarm returns when data does",
    )
    assert back
