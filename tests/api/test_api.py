"""The HTTP API over real SQLite stores, with readings fed straight into the pipeline (no broker needed)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.publishing import feed


def test_health_is_open_and_readiness_reports_each_part(service) -> None:
    _, _, api = service
    assert api.get("/healthz").json() == {"status": "ok"}
    ready = api.get("/readyz")
    assert ready.status_code == 503  # the subscriber was never started: no broker
    assert ready.headers["content-type"] == "application/problem+json"
    assert ready.json()["checks"] == {
        "broker": "not connected",
        "state_store": "ok",
        "telemetry_store": "ok",
        "ingest": "ok",
    }


def test_devices_with_latest_values_status_and_alarm_counts(service) -> None:
    svc, clock, api = service
    feed(svc, clock, "pump", "pump-1", {"pressure_bar": 1.2, "pump_running": True})
    feed(svc, clock, "smoke", "smoke-A-01", {"state": "normal", "battery_pct": 80})
    clock.advance(minutes=10)
    feed(svc, clock, "pump", "pump-2", {"pressure_bar": 4.0})

    body = api.get("/api/v1/devices").json()
    assert body["total"] == 28 and len(body["items"]) == 28
    by_id = {d["id"]: d for d in body["items"]}
    assert by_id["pump-1"]["latest"] == {"pressure_bar": 1.2, "pump_running": True}
    assert by_id["pump-1"]["active_alarms"] == 1 and by_id["pump-2"]["active_alarms"] == 0
    assert (by_id["pump-1"]["status"], by_id["pump-2"]["status"], by_id["lift-A1"]["status"]) == (
        "stale",
        "online",
        "offline",
    )
    assert by_id["pump-1"]["last_seen"] == "2026-11-22T02:00:00+08:00"
    assert by_id["lift-A1"]["last_seen"] is None

    assert [d["id"] for d in api.get("/api/v1/devices?type=pump").json()["items"]] == ["pump-1", "pump-2"]
    assert api.get("/api/v1/devices?building=B&type=elevator").json()["total"] == 2
    assert api.get("/api/v1/devices?status=online").json()["total"] == 1
    assert api.get("/api/v1/devices/smoke-A-01").json()["latest"]["battery_pct"] == 80


def test_alarm_list_filters(service) -> None:
    svc, clock, api = service
    feed(svc, clock, "pump", "pump-1", {"pressure_bar": 1.2})
    feed(svc, clock, "smoke", "smoke-B-02", {"state": "normal", "battery_pct": 10})
    clock.advance(minutes=1)
    feed(svc, clock, "pump", "pump-2", {"pressure_bar": 2.5})
    feed(svc, clock, "pump", "pump-2", {"pressure_bar": 4.0})  # returns, still unacknowledged

    active = api.get("/api/v1/alarms").json()
    assert [(a["device_id"], a["severity"]) for a in active["items"]] == [
        ("pump-1", "critical"),
        ("pump-2", "major"),
        ("smoke-B-02", "warning"),
    ]
    assert api.get("/api/v1/alarms?state=unacked").json()["total"] == 3
    assert api.get("/api/v1/alarms?state=shelved").json()["total"] == 0
    assert api.get("/api/v1/alarms?severity=critical,warning").json()["total"] == 2
    assert api.get("/api/v1/alarms?severity=critical&severity=major").json()["total"] == 2
    assert api.get("/api/v1/alarms?device=pump-2").json()["items"][0]["state"] == "returned_unacked"
    assert api.get("/api/v1/alarms?site=elsewhere").json()["total"] == 0
    page = api.get("/api/v1/alarms?limit=1&offset=1").json()
    assert page["total"] == 3 and [a["device_id"] for a in page["items"]] == ["pump-2"]


def test_work_orders_list_and_detail(service) -> None:
    svc, clock, api = service
    feed(svc, clock, "smoke", "smoke-B-05", {"state": "alarm"})
    [order] = api.get("/api/v1/work-orders?status=open,assigned").json()["items"]
    assert order["number"] == "WO-20261122-0001" and order["priority"] == "P1" and order["category"] == "fire"
    assert order["due_at"] == "2026-11-22T02:05:00+08:00"
    one = api.get(f"/api/v1/work-orders/{order['id']}").json()
    # The detail adds its history and paging to the list's shape. This service has no channels: the on-call's
    # first step reaches nobody.
    assert [e["kind"] for e in one.pop("history")] == ["opened", "page_missed"]
    assert one.pop("paging")["policy"] == "urgent"
    assert one == order
    assert api.get("/api/v1/work-orders?status=closed").json() == {"items": [], "total": 0}


def test_rejects_are_listed_with_their_reason(service) -> None:
    svc, clock, api = service
    feed(svc, clock, "pump", "pump-1", b"not json")
    [reject] = api.get("/api/v1/ingest/rejects").json()["items"]
    assert reject["payload"] == "not json" and reject["reason"].startswith("payload is not valid JSON")
    assert reject["received_at"] == "2026-11-22T02:00:00+08:00"


@pytest.mark.parametrize(
    ("path", "status", "detail"),
    [
        ("/api/v1/devices/nope", 404, "device 'nope' not found"),
        ("/api/v1/work-orders/999", 404, "work order 999 not found"),
        ("/api/v1/alarms?severity=bogus", 422, "query.severity: 'bogus' is not one of critical, major, minor, warning"),
        ("/api/v1/work-orders?status=done", 422, "query.status: 'done' is not one of open"),
        ("/api/v1/alarms?limit=0", 422, "query.limit: Input should be greater than or equal to 1"),
        ("/api/v1/nothing-here", 404, None),
    ],
)
def test_errors_are_problem_json(service, path: str, status: int, detail: str | None) -> None:
    _, _, api = service
    response = api.get(path)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status and body["title"] == {404: "Not Found", 422: "Invalid request"}[status]
    if detail:
        assert body["detail"].startswith(detail)


def test_dashboard_and_openapi_are_served(service) -> None:
    _, _, api = service
    page = api.get("/")
    assert page.status_code == 200 and "<title>facmon" in page.text and "/static/dashboard.js" in page.text
    script = api.get("/static/dashboard.js")
    assert script.status_code == 200 and "/api/v1/stream" in script.text
    assert "javascript" in script.headers["content-type"]
    assert api.get("/static/vendor/uplot/uPlot.iife.min.js").status_code == 200
    assert api.get("/static/../deps.py").status_code == 404
    spec = api.get("/openapi.json").json()
    assert {"/api/v1/devices", "/api/v1/alarms", "/api/v1/work-orders", "/healthz", "/readyz"} <= set(spec["paths"])


def test_stale_threshold_comes_from_config(service) -> None:
    svc, clock, api = service
    feed(svc, clock, "pump", "pump-1", {"pressure_bar": 4.0})
    clock.advance(minutes=4, seconds=59)
    assert api.get("/api/v1/devices/pump-1").json()["status"] == "online"
    clock.advance(seconds=2)
    assert api.get("/api/v1/devices/pump-1").json()["status"] == "stale"
    clock.advance(minutes=30)
    assert api.get("/api/v1/devices/pump-1").json()["status"] == "offline"
    assert timedelta(minutes=5) == svc.config.ingest.stale_after
