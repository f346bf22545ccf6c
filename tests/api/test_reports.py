"""`GET /api/v1/reports/monthly` over a month lived through the service: readings fed in, alarms acknowledged
and work orders moved through the API, the clock in the facility's time zone (Asia/Shanghai)."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient

from facmon.cmd.service import Service
from tests.api.conftest import signed_in
from tests.conftest import FakeClock
from tests.publishing import feed

SHANGHAI = ZoneInfo("Asia/Shanghai")


def at(clock: FakeClock, month: int, day: int, hour: int, minute: int) -> None:
    clock.current = datetime(2026, month, day, hour, minute, tzinfo=SHANGHAI)


def order_of(api: TestClient, alarm_id: int) -> dict[str, Any]:
    [order] = [o for o in api.get("/api/v1/work-orders").json()["items"] if o["alarm_id"] == alarm_id]
    return order


def ack(api: TestClient, alarm_id: int) -> None:
    assert signed_in(api, "operator.li").post(f"/api/v1/alarms/{alarm_id}/ack", json={}).status_code == 200


def move(api: TestClient, order: dict[str, Any], to: str, **body: Any) -> None:
    response = signed_in(api, "zhang.wei").post(
        f"/api/v1/work-orders/{order['id']}/transition", json={"to": to, **body}
    )
    assert response.status_code == 200, response.text


@pytest.fixture
def november(service: tuple[Service, FakeClock, TestClient]) -> tuple[Service, FakeClock, TestClient]:
    """A smoke alarm late on 31 October; low pressure on 5 November, handled in time; a fire alarm at 23:30 on
    30 November (15:30 UTC), reached late; a lift fault at 00:30 on 1 December (still 30 November in UTC)."""
    svc, clock, api = service
    at(clock, 10, 31, 23, 50)
    feed(svc, clock, "smoke", "smoke-A-01", {"state": "alarm"})  # alarm 1, its P1 work order in October

    at(clock, 11, 5, 10, 0)
    feed(svc, clock, "pump", "pump-1", {"pressure_bar": 2.5})  # alarm 2: major, a P2 due in 30 min
    pump_order = order_of(api, 2)
    clock.advance(minutes=4)
    ack(api, 2)
    clock.advance(minutes=6)
    move(api, pump_order, "assigned", assignee="zhang.wei")  # responded after 10 min: met
    clock.advance(minutes=10)
    move(api, pump_order, "in_progress")
    clock.advance(minutes=70)
    move(api, pump_order, "resolved", note="reset the pressure switch")  # resolved after 90 min

    at(clock, 11, 30, 23, 30)
    feed(svc, clock, "smoke", "smoke-B-02", {"state": "alarm"})  # alarm 3: critical, a P1 due in 5 min
    fire_order = order_of(api, 3)
    clock.advance(minutes=7)
    move(api, fire_order, "in_progress")  # responded after 7 min: missed
    clock.advance(minutes=1)
    ack(api, 3)  # acknowledged after 8 min
    clock.advance(minutes=29)
    move(api, fire_order, "resolved", note="burnt toast on 4F; detector cleaned")  # resolved after 37 min

    at(clock, 12, 1, 0, 30)
    feed(svc, clock, "elevator", "lift-B1", {"state": "fault", "floor": 3})  # alarm 4, in December
    return service


def test_the_november_report_counts_faults_mtta_mttr_and_sla(november) -> None:
    _, _, api = november
    response = api.get("/api/v1/reports/monthly", params={"month": "2026-11"})
    assert response.status_code == 200
    body = response.json()
    assert (body["month"], body["start"], body["end"]) == (
        "2026-11",
        "2026-11-01T00:00:00+08:00",
        "2026-12-01T00:00:00+08:00",
    )
    assert body["faults"] == 2
    assert body["by_device_type"] == [{"device_type": "pump", "faults": 1}, {"device_type": "smoke", "faults": 1}]
    assert body["by_device"] == [
        {
            "device_id": "pump-1",
            "device_type": "pump",
            "name": "Booster pump 1",
            "site": "riverside",
            "building": "A",
            "faults": 1,
        },
        {
            "device_id": "smoke-B-02",
            "device_type": "smoke",
            "name": "Smoke detector B4F lobby",
            "site": "riverside",
            "building": "B",
            "faults": 1,
        },
    ]
    assert {s["severity"]: s["faults"] for s in body["by_severity"]} == {
        "critical": 1,
        "major": 1,
        "minor": 0,
        "warning": 0,
    }
    assert body["mtta"] == {"acknowledged": 2, "unacknowledged": 0, "mean_minutes": 6.0}
    assert body["mttr"]["overall"] == {"key": "all", "work_orders": 2, "resolved": 2, "mean_minutes": 63.5}
    assert {r["key"]: r["mean_minutes"] for r in body["mttr"]["by_priority"]} == {
        "P1": 37.0,
        "P2": 90.0,
        "P3": None,
        "P4": None,
    }
    assert {r["key"]: r["mean_minutes"] for r in body["mttr"]["by_category"]}["water"] == 90.0
    assert body["sla"]["overall"] == {
        "key": "all",
        "met": 1,
        "missed": 1,
        "overdue": 0,
        "pending": 0,
        "compliance_pct": 50.0,
    }
    assert [(s["key"], s["met"], s["missed"]) for s in body["sla"]["by_priority"]][:2] == [("P1", 0, 1), ("P2", 1, 0)]
    assert body["top_devices"][0] == {"key": "pump-1", "name": "Booster pump 1", "faults": 1}
    assert body["top_rules"] == [
        {"key": "pump-pressure-low", "name": None, "faults": 1},
        {"key": "smoke-alarm", "name": None, "faults": 1},
    ]


def test_without_a_month_it_is_the_current_one_in_the_facility_s_time_zone(november) -> None:
    _, _, api = november  # 00:30 on 1 December in Shanghai, 30 November in UTC
    body = api.get("/api/v1/reports/monthly").json()
    assert (body["month"], body["faults"]) == ("2026-12", 1)
    assert body["by_device"][0]["device_id"] == "lift-B1"
    assert body["sla"]["overall"]["pending"] == 1  # its P2 is due at 01:00


def test_the_csv_carries_the_same_numbers_one_table_after_another(november) -> None:
    _, _, api = november
    response = api.get("/api/v1/reports/monthly", params={"month": "2026-11", "format": "csv"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"] == 'attachment; filename="facmon-report-2026-11.csv"'
    assert response.content.startswith(b"\xef\xbb\xbf")  # so Excel reads it as UTF-8

    tables: dict[str, list[dict[str, str]]] = {}
    rows = csv.reader(io.StringIO(response.content.decode("utf-8-sig")))
    for title in rows:
        header = next(rows)
        tables[title[0]] = [dict(zip(header, row, strict=True)) for row in iter(lambda: next(rows), [])]
    assert list(tables) == [
        "summary",
        "faults by device type",
        "faults by device",
        "faults by severity",
        "mttr",
        "sla",
        "top devices",
        "top rules",
    ]
    [summary] = tables["summary"]
    assert (summary["month"], summary["faults"], summary["acknowledged"], summary["mtta_minutes"]) == (
        "2026-11",
        "2",
        "2",
        "6.0",
    )
    assert tables["faults by device type"] == [
        {"device_type": "pump", "faults": "1"},
        {"device_type": "smoke", "faults": "1"},
    ]
    assert tables["faults by device"][1] == {
        "device_id": "smoke-B-02",
        "device_type": "smoke",
        "name": "Smoke detector B4F lobby",
        "site": "riverside",
        "building": "B",
        "faults": "1",
    }
    mttr = {r["key"]: (r["work_orders"], r["resolved"], r["mttr_minutes"]) for r in tables["mttr"]}
    assert (mttr["all"], mttr["P1"], mttr["P2"], mttr["P3"], mttr["power"]) == (
        ("2", "2", "63.5"),
        ("1", "1", "37.0"),
        ("1", "1", "90.0"),
        ("0", "0", ""),
        ("0", "0", ""),
    )
    sla = {r["key"]: r for r in tables["sla"]}
    assert (sla["all"]["met"], sla["all"]["missed"], sla["all"]["compliance_pct"]) == ("1", "1", "50.0")
    assert tables["top rules"] == [{"rule": "pump-pressure-low", "faults": "1"}, {"rule": "smoke-alarm", "faults": "1"}]


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({"month": "2026-13"}, "query.month"),
        ({"month": "November"}, "query.month"),
        ({"month": "2026-11", "format": "xlsx"}, "query.format"),
    ],
)
def test_a_bad_month_or_format_is_a_422_problem(service, params: dict[str, str], loc: str) -> None:
    _, _, api = service
    response = api.get("/api/v1/reports/monthly", params=params)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["errors"][0]["loc"] == loc
    assert body["detail"].startswith(f"{loc}: ")


def test_the_endpoint_is_documented_in_openapi(service) -> None:
    _, _, api = service
    operation = api.get("/openapi.json").json()["paths"]["/api/v1/reports/monthly"]["get"]
    assert operation["summary"].startswith("Monthly report")
    assert {p["name"] for p in operation["parameters"]} == {"month", "format"}
    assert set(operation["responses"]["200"]["content"]) == {"application/json", "text/csv"}
