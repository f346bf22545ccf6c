"""The running service pages for real: a smoke alarm published through the broker opens a P1, the scheduler pages
the on-call through the MQTT pagers channel, escalates after the wait, and stops once acknowledged via the API."""

from __future__ import annotations

import json
from pathlib import Path

from facmon.cmd.service import Service
from tests.conftest import Broker, example_config
from tests.publishing import Gateway
from tests.signing import signed_in
from tests.simulators.listening import Listener
from tests.waiting import eventually


def test_a_smoke_alarm_pages_escalates_and_stops_on_ack_in_the_running_service(
    tmp_path: Path, mqtt_broker: Broker
) -> None:
    config = example_config(
        tmp_path,
        mqtt_broker,
        # Waits of seconds rather than minutes, so that the real scheduler runs the steps within the test.
        FACMON_ONCALL__ESCALATION_POLICIES__0__STEPS__0__WAIT="2s",
        FACMON_ONCALL__ESCALATION_POLICIES__0__STEPS__1__WAIT="60s",
    )
    pagers = Listener(mqtt_broker, "facility/pagers")
    service = Service(config)
    gateway = Gateway(mqtt_broker)
    try:
        service.start()
        eventually(lambda: service.subscriber.connected, what="facmon's subscription")
        gateway.publish("smoke", "smoke-B-05", {"state": "alarm"})

        def pages() -> list[tuple[str, dict[str, str]]]:
            return [
                (topic.rsplit("/", 1)[1], json.loads(payload))
                for topic, payload, _ in pagers.messages
                if not topic.endswith("/all")  # the broadcast of each new work order
            ]

        # Step 1: whoever the duty schedule has on call now.
        eventually(lambda: len(pages()) >= 1, timeout=15, what="the first page")
        first = pages()[0]
        on_call = service.escalator.roster.on_call("duty", service.clock.now())
        assert first[0] == on_call
        assert first[1]["to"] == on_call and "WO-" in first[1]["subject"]
        # Step 2, after its 2 s wait: the whole duty team.
        eventually(lambda: len(pages()) >= 4, timeout=15, what="the second step's pages")
        assert sorted(p[0] for p in pages()[1:4]) == ["li.na", "wang.jun", "zhang.wei"]

        api = signed_in(service, "li.na")
        items = api.get("/api/v1/work-orders").json()["items"]
        [order] = [o for o in items if o["source"] == "alarm"]  # maintenance plans may have opened some too
        acked = api.post(f"/api/v1/work-orders/{order['id']}/ack", json={"by": "li.na"})
        assert acked.status_code == 200 and acked.json()["paging"]["state"] == "acknowledged"
        assert len(pages()) == 4
    finally:
        gateway.close()
        service.stop()
        pagers.client.disconnect()
        pagers.client.loop_stop()
    assert service.scheduler.jobs() == {}  # stopped
