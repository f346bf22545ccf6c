"""Fire spreading through tower B: 15 smoke detectors go into alarm within 2 minutes → an alarm flood.

The detectors' gateway publishes through the real broker; ingest, rules and the flood detector run as in
production. More than 10 alarms within 10 minutes on site riverside is a flood (ISA-18.2): it is recorded, and
the alarm-system health endpoint says so.
"""

from __future__ import annotations

from datetime import timedelta

from tests.scenarios.conftest import Live
from tests.waiting import eventually

DETECTORS = [f"smoke-A-{n:02d}" for n in range(1, 11)] + [f"smoke-B-{n:02d}" for n in range(1, 6)]


def test_fifteen_smoke_alarms_within_two_minutes_are_recorded_as_a_flood(live: Live) -> None:
    service, api, gateway = live
    assert api.get("/api/v1/alarms/kpis?site=riverside").json()["flood"] is False

    for device in DETECTORS:
        gateway.publish("smoke", device, {"state": "alarm"})

    def flooded() -> dict | None:
        # The flood detector hears of each alarm after it is committed: wait for it to catch up.
        body = api.get("/api/v1/alarms/kpis?site=riverside").json()
        done = body["flood"] and body["priority_mix"]["critical"] == 15 and body["floods"][-1]["peak"] == 15
        return body if done else None

    kpis = eventually(flooded, what="flood: true, with 15 critical alarms at its peak")
    [flood] = kpis["floods"]
    assert flood["site"] == "riverside" and flood["ended_at"] is None
    assert flood["started_at"].endswith("+08:00")
    assert [t["count"] for t in kpis["top"]] == [1] * 10  # each detector once: a flood, not a bad actor

    [recorded] = service.state.open_floods()
    alarms = sorted(service.state.list_alarms(site="riverside").items, key=lambda a: a.id)
    assert sorted(a.device_id for a in alarms) == sorted(DETECTORS)
    assert recorded.started_at == alarms[10].raised_at  # the eleventh alarm started it
    assert alarms[-1].raised_at - alarms[0].raised_at < timedelta(minutes=2)
