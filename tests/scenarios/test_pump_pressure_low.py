"""Pump pressure falls below its low limit at night: alarm, work order, all seen through the API.

A gateway publishes through the real broker; ingest, rules and alerts run as in production; an operator reads
the API. A malformed message in the middle does not stop any of it.
"""

from __future__ import annotations

import time

from tests.scenarios.conftest import Live
from tests.waiting import eventually


def test_pressure_drop_raises_alarm_and_opens_work_order(live: Live) -> None:
    _, api, gateway = live
    # A slow decline over the night, a reading every 40 s: low pressure, not a burst.
    start = int(time.time() * 1000) - 10 * 60_000
    for i, pressure in enumerate((4.0, 3.6, 3.2, 2.8, 2.4, 2.0, 1.6, 1.3)):
        if i == 4:
            gateway.publish("pump", "pump-1", b'{"pressure_bar": 1.0,,}')  # a gateway glitch
        gateway.publish("pump", "pump-1", {"pressure_bar": pressure, "pump_running": True, "ts": start + i * 40_000})

    def alarm() -> dict | None:
        items = api.get("/api/v1/alarms?device=pump-1").json()["items"]
        return items[0] if items and items[0]["severity"] == "critical" else None

    raised = eventually(alarm, what="a critical alarm in the API")
    assert raised["device_id"] == "pump-1" and raised["rule"] == "pump-pressure-low"
    assert api.get("/api/v1/alarms").json()["total"] == 1  # no burst, nothing else
    assert raised["state"] == "active_unacked" and raised["value"] == 1.3
    assert raised["raised_at"].endswith("+08:00")

    orders = eventually(
        lambda: api.get("/api/v1/work-orders?status=open&source=alarm").json()["items"], what="a work order"
    )
    [order] = orders
    # Opened at major (2.8 bar) as P2, made P1 when the alarm turned critical.
    assert order["alarm_id"] == raised["id"] and order["priority"] == "P1"
    history = api.get(f"/api/v1/work-orders/{order['id']}").json()["history"]
    assert "priority_raised" in [e["kind"] for e in history]
    assert order["number"].startswith("WO-") and order["category"] == "water"

    [reject] = api.get("/api/v1/ingest/rejects").json()["items"]
    assert reject["topic"] == "facility/riverside/pump/pump-1/telemetry"
    assert reject["reason"].startswith("payload is not valid JSON")
    device = api.get("/api/v1/devices/pump-1").json()
    assert device["latest"]["pressure_bar"] == 1.3 and device["active_alarms"] == 1
    assert device["status"] == "online"
