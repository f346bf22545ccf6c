"""The notification log through the API, over the service's real state store."""

from __future__ import annotations

from datetime import timedelta

from facmon.alerts.notifications.notifier import Delivery, Notification
from facmon.alerts.notifications.outbox import Outbox


class Channel:
    def __init__(self, name: str, delivery: Delivery) -> None:
        self.name = name
        self.language = "en"
        self.delivery = delivery

    def send(self, notification: Notification) -> Delivery:
        return self.delivery


def test_the_notification_log_lists_by_state_in_the_facility_time(service) -> None:
    svc, clock, api = service
    with svc.state.begin() as tx:
        for channel, ref in [
            ("duty", "WO-20261122-0001"),
            ("pager", "WO-20261122-0001"),
            ("wecom", "WO-20261122-0002"),
        ]:
            tx.queue_notification(
                channel=channel,
                kind="work_order_opened",
                ref=ref,
                language="en",
                subject=f"{ref} [P1] Booster pump 1",
                body="device pump-1",
                at=clock.now(),
            )
    channels = {
        "duty": Channel("duty", Delivery(True)),
        "pager": Channel("pager", Delivery(False, retryable=True, detail="broker unreachable")),
        "wecom": Channel("wecom", Delivery(False, retryable=False, detail="HTTP 400: invalid webhook key")),
    }
    clock.advance(seconds=3)
    Outbox(svc.state, channels, clock, base_delay=timedelta(seconds=10), jitter=0).deliver_due(clock.now())

    everything = api.get("/api/v1/notifications").json()
    assert everything["total"] == 3
    assert [n["channel"] for n in everything["items"]] == ["wecom", "pager", "duty"]  # newest first

    [sent] = api.get("/api/v1/notifications?state=sent").json()["items"]
    assert sent == {
        "id": sent["id"],
        "channel": "duty",
        "kind": "work_order_opened",
        "ref": "WO-20261122-0001",
        "language": "en",
        "subject": "WO-20261122-0001 [P1] Booster pump 1",
        "state": "sent",
        "attempts": 1,
        "created_at": "2026-11-22T02:00:00+08:00",
        "next_attempt_at": None,
        "sent_at": "2026-11-22T02:00:03+08:00",
        "last_error": None,
        "recipient": None,
        "address": None,
    }
    [pending] = api.get("/api/v1/notifications?state=pending").json()["items"]
    assert (pending["channel"], pending["attempts"], pending["next_attempt_at"], pending["last_error"]) == (
        "pager",
        1,
        "2026-11-22T02:00:13+08:00",
        "broker unreachable",
    )
    [dead] = api.get("/api/v1/notifications?state=dead").json()["items"]
    assert (dead["channel"], dead["last_error"]) == ("wecom", "HTTP 400: invalid webhook key")

    both = api.get("/api/v1/notifications?state=pending,dead&limit=1")
    assert both.json()["total"] == 2 and len(both.json()["items"]) == 1
    wrong = api.get("/api/v1/notifications?state=lost")
    assert wrong.status_code == 422 and wrong.headers["content-type"] == "application/problem+json"


def test_an_offset_beyond_64_bits_is_a_422_not_a_server_error(service) -> None:
    # Found by the fuzz pass: the store's OFFSET is a 64-bit integer, and a larger one overflowed there (a 500).
    _, _, api = service
    response = api.get("/api/v1/notifications", params={"limit": 1, "offset": 2**63})
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == "query.offset"
    assert api.get("/api/v1/notifications", params={"offset": 2**63 - 1}).json() == {"items": [], "total": 0}
