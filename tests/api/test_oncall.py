"""On call now, acknowledging a work order's paging through the API, and the one-click link in a page."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from facmon.cmd.service import Service
from tests.api.conftest import NIGHT, signed_in
from tests.conftest import Broker, FakeClock, Recorder, example_config
from tests.publishing import feed

SECRET = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def paging(tmp_path: Path, mqtt_broker: Broker) -> Iterator[tuple[Service, FakeClock, TestClient, Recorder]]:
    """The example facility with acknowledge links, its pagers channel a recorder; not started: time is stepped."""
    config = example_config(
        tmp_path,
        mqtt_broker,
        FACMON_ONCALL__LINK_SECRET=SECRET,
        FACMON_API__PUBLIC_URL="https://facmon.example.com",
    )
    clock = FakeClock(NIGHT)
    pagers = Recorder("pagers")
    service = Service(config, clock=clock, notifiers=[Recorder("duty-log"), pagers])
    yield service, clock, signed_in(service, "li.na", base_url="https://facmon.example.com"), pagers
    service.stop()


def step(service: Service, clock: FakeClock, **delta: float) -> None:
    now = clock.advance(**delta)
    service.escalator.run_due(now)
    service.outbox.deliver_due(now)


def test_on_call_now_names_each_schedule_s_person_and_until_when(paging) -> None:
    _svc, _clock, api, _pagers = paging
    # Sunday 02:00 in Shanghai: the weekend-nights layer (Saturday 22:00 to 07:00) has chen.jie.
    body = api.get("/api/v1/oncall/now").json()
    assert body == {
        "items": [
            {
                "schedule": "duty",
                "name": "Duty engineer",
                "person": "chen.jie",
                "person_name": "Chen Jie",
                "layer": "weekend nights",
                "until": "2026-11-22T07:00:00+08:00",
            }
        ],
        "total": 1,
    }


def test_acknowledging_through_the_api_stops_the_paging(paging) -> None:
    svc, clock, api, pagers = paging
    feed(svc, clock, "smoke", "smoke-B-05", {"state": "alarm"})
    step(svc, clock)
    [order] = api.get("/api/v1/work-orders").json()["items"]
    detail = api.get(f"/api/v1/work-orders/{order['id']}").json()
    assert detail["paging"]["state"] == "active"
    assert (detail["paging"]["policy"], detail["paging"]["step"]) == ("urgent", 1)
    assert detail["paging"]["next_at"] == "2026-11-22T02:05:00+08:00"
    assert [n.to for n in pagers.sent if n.to] == ["chen.jie"]

    response = signed_in(api, "chen.jie").post(f"/api/v1/work-orders/{order['id']}/ack", json={})
    assert response.status_code == 200, response.text
    paging_now = response.json()["paging"]
    assert (paging_now["state"], paging_now["acked_by"]) == ("acknowledged", "chen.jie")
    assert paging_now["next_at"] == "2026-11-22T02:30:00+08:00"  # the P1 reminder, unless resolved
    assert response.json()["history"][-1]["kind"] == "acknowledged"
    step(svc, clock, minutes=10)
    assert [n.to for n in pagers.sent if n.to] == ["chen.jie"]  # no step 2

    again = signed_in(api, "li.na").post(f"/api/v1/work-orders/{order['id']}/ack", json={})
    assert again.json()["paging"]["acked_by"] == "chen.jie"


def test_a_work_order_that_pages_nobody_cannot_be_acknowledged(paging) -> None:
    _svc, _clock, api, _pagers = paging
    created = api.post("/api/v1/work-orders", json={"title": "Lamp out", "priority": "P4", "category": "general"})
    response = signed_in(api, "li.na").post(f"/api/v1/work-orders/{created.json()['id']}/ack", json={})
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert "pages nobody" in response.json()["detail"]
    assert signed_in(api, "li.na").post("/api/v1/work-orders/999/ack", json={}).status_code == 404


def test_the_link_in_a_page_asks_first_and_acknowledges_on_the_button(paging) -> None:
    svc, clock, api, pagers = paging
    feed(svc, clock, "smoke", "smoke-B-05", {"state": "alarm"})
    step(svc, clock)
    [page] = [n for n in pagers.sent if n.to]
    link = page.body.split("Acknowledge: ", 1)[1].strip()
    assert link.startswith("https://facmon.example.com/ack/")
    path = link.removeprefix("https://facmon.example.com")

    shown = api.get(path)  # what a mail scanner or a chat preview does
    assert shown.status_code == 200 and "<form" in shown.text and "chen.jie" in shown.text
    order_id = api.get("/api/v1/work-orders").json()["items"][0]["id"]
    assert api.get(f"/api/v1/work-orders/{order_id}").json()["paging"]["state"] == "active"

    done = api.post(path)
    assert done.status_code == 200 and "chen.jie" in done.text
    detail = api.get(f"/api/v1/work-orders/{order_id}").json()
    assert (detail["paging"]["state"], detail["paging"]["acked_by"]) == ("acknowledged", "chen.jie")
    assert detail["history"][-1]["note"] == "via link"

    forged = path[:-3] + ("xyz" if not path.endswith("xyz") else "abc")
    assert api.get(forged).status_code == 403
    assert api.post(forged).status_code == 403


def test_metrics_count_notifications_and_paging_by_state(paging) -> None:
    svc, clock, api, _pagers = paging
    feed(svc, clock, "smoke", "smoke-B-05", {"state": "alarm"})
    step(svc, clock)
    text = api.get("/metrics").text
    assert 'facmon_escalations{state="active"} 1.0' in text
    assert 'facmon_notifications{state="sent"}' in text and 'facmon_notifications{state="dead"} 0.0' in text
