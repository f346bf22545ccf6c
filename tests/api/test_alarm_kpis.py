"""`GET /api/v1/alarms/kpis` over real SQLite stores, with readings fed straight into the pipeline."""

from __future__ import annotations

import pytest

from tests.publishing import feed

SMOKE_DETECTORS = [f"smoke-A-{n:02d}" for n in range(1, 11)] + [f"smoke-B-{n:02d}" for n in range(1, 6)]


def test_a_quiet_facility_has_a_full_report_of_zeros(service) -> None:
    _, _, api = service
    response = api.get("/api/v1/alarms/kpis")
    assert response.status_code == 200
    body = response.json()
    buckets = body["alarm_rate"].pop("buckets")
    assert body == {
        "window_start": "2026-11-21T02:00:00+08:00",
        "window_end": "2026-11-22T02:00:00+08:00",
        "site": None,
        "alarm_rate": {"average_per_10min": 0.0, "max_per_10min": 0},
        "flood": False,
        "floods": [],
        "chattering": [],
        "stale": [],
        "top": [],
        "priority_mix": {"critical": 0, "major": 0, "minor": 0, "warning": 0},
    }
    assert len(buckets) == 144
    assert buckets[0] == {"start": "2026-11-21T02:00:00+08:00", "count": 0}
    assert buckets[-1] == {"start": "2026-11-22T01:50:00+08:00", "count": 0}


def test_rate_chattering_top_and_priority_mix_over_the_last_hour(service) -> None:
    svc, clock, api = service
    feed(svc, clock, "pump", "pump-1", {"pressure_bar": 2.5})  # major
    feed(svc, clock, "smoke", "smoke-B-02", {"state": "normal", "battery_pct": 10})  # warning
    clock.advance(minutes=11)
    feed(svc, clock, "smoke", "smoke-A-01", {"state": "alarm"})  # critical
    for pressure in (3.2, 2.8, 3.2):  # returned, reactivated, returned: within 30 s
        clock.advance(seconds=10)
        feed(svc, clock, "pump", "pump-1", {"pressure_bar": pressure})

    body = api.get("/api/v1/alarms/kpis?window=1h").json()
    assert (body["window_start"], body["window_end"]) == ("2026-11-22T01:11:30+08:00", "2026-11-22T02:11:30+08:00")
    assert body["alarm_rate"] == {
        "average_per_10min": 0.67,
        "max_per_10min": 2,
        "buckets": [
            {"start": "2026-11-22T01:11:30+08:00", "count": 0},
            {"start": "2026-11-22T01:21:30+08:00", "count": 0},
            {"start": "2026-11-22T01:31:30+08:00", "count": 0},
            {"start": "2026-11-22T01:41:30+08:00", "count": 0},
            {"start": "2026-11-22T01:51:30+08:00", "count": 2},
            {"start": "2026-11-22T02:01:30+08:00", "count": 2},
        ],
    }
    assert body["chattering"] == [
        {"rule": "pump-pressure-low", "device_id": "pump-1", "transitions": 3, "within_seconds": 60}
    ]
    assert body["top"] == [
        {"rule": "pump-pressure-low", "device_id": "pump-1", "count": 2},
        {"rule": "smoke-alarm", "device_id": "smoke-A-01", "count": 1},
        {"rule": "smoke-battery-low", "device_id": "smoke-B-02", "count": 1},
    ]
    assert body["priority_mix"] == {"critical": 1, "major": 2, "minor": 0, "warning": 1}
    assert (body["flood"], body["floods"], body["stale"]) == (False, [], [])

    assert api.get("/api/v1/alarms/kpis?window=1h&site=riverside").json() == {**body, "site": "riverside"}
    elsewhere = api.get("/api/v1/alarms/kpis?window=1h&site=elsewhere").json()
    assert elsewhere["site"] == "elsewhere" and elsewhere["top"] == [] and elsewhere["chattering"] == []
    assert elsewhere["priority_mix"] == {"critical": 0, "major": 0, "minor": 0, "warning": 0}


def test_alarms_active_for_more_than_24_hours_are_stale(service) -> None:
    svc, clock, api = service
    feed(svc, clock, "pump", "pump-1", {"pressure_bar": 2.5})
    clock.advance(minutes=10)
    feed(svc, clock, "smoke", "smoke-B-02", {"state": "normal", "battery_pct": 10})
    clock.advance(hours=24, minutes=-5)
    assert api.get("/api/v1/alarms/kpis").json()["stale"] == [
        {
            "alarm_id": 1,
            "rule": "pump-pressure-low",
            "device_id": "pump-1",
            "raised_at": "2026-11-22T02:00:00+08:00",
            "active_hours": 24.1,
        }
    ]
    assert api.get("/api/v1/alarms/kpis?site=elsewhere").json()["stale"] == []


def test_fifteen_smoke_alarms_in_two_minutes_are_a_flood(service) -> None:
    svc, clock, api = service
    for n, device in enumerate(SMOKE_DETECTORS, start=1):
        feed(svc, clock, "smoke", device, {"state": "alarm"})
        if n == 10:
            assert api.get("/api/v1/alarms/kpis").json()["flood"] is False
        clock.advance(seconds=8)

    body = api.get("/api/v1/alarms/kpis?site=riverside&window=30m").json()
    assert body["flood"] is True
    assert body["floods"] == [
        {"site": "riverside", "started_at": "2026-11-22T02:01:20+08:00", "ended_at": None, "peak": 15}
    ]
    assert body["alarm_rate"]["max_per_10min"] == 15 and body["priority_mix"]["critical"] == 15
    assert api.get("/api/v1/alarms/kpis").json()["flood"] is True
    assert api.get("/api/v1/alarms/kpis?site=elsewhere").json()["flood"] is False

    clock.advance(minutes=12)
    svc.floods.tick(clock.now())
    ended = api.get("/api/v1/alarms/kpis?window=30m").json()
    assert ended["flood"] is False
    assert ended["floods"][0]["ended_at"] == "2026-11-22T02:11:12+08:00"  # when the tenth (02:01:12) left the window


@pytest.mark.parametrize(
    ("window", "detail"),
    [
        ("a day", "query.window: 'a day' is not a duration such as 30s, 5m, 2h or 1d"),
        ("0s", "query.window: the window must be longer than 0s"),
        ("32d", "query.window: '32d' is longer than the longest window, 31d"),
    ],
)
def test_an_unusable_window_is_a_422_problem(service, window: str, detail: str) -> None:
    _, _, api = service
    response = api.get("/api/v1/alarms/kpis", params={"window": window})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert (body["title"], body["detail"]) == ("Invalid request", detail)
    assert body["errors"][0]["loc"] == "query.window"


def test_the_longest_window_is_accepted(service) -> None:
    _, _, api = service
    assert len(api.get("/api/v1/alarms/kpis?window=31d").json()["alarm_rate"]["buckets"]) == 31 * 144


def test_the_endpoint_is_documented_in_openapi(service) -> None:
    _, _, api = service
    operation = api.get("/openapi.json").json()["paths"]["/api/v1/alarms/kpis"]["get"]
    assert operation["summary"].startswith("Alarm-system health")
    assert {p["name"]: bool(p.get("description")) for p in operation["parameters"]} == {"site": True, "window": True}


def test_a_window_too_long_for_a_timedelta_or_a_site_with_nul_is_a_422_not_a_server_error(service) -> None:
    # More than 999999999 days overflowed a timedelta, and PostgreSQL cannot compare text with NUL: both were 500s.
    _, _, api = service
    for params, loc in [({"window": "1000000000d"}, "query.window"), ({"site": "riverside\x00"}, "query.site")]:
        response = api.get("/api/v1/alarms/kpis", params=params)
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["loc"] == loc
