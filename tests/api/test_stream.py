"""The live stream over a real HTTP server: alarm and work-order changes and readings as they happen, and a
reconnect with Last-Event-ID that gets what it missed, once."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import orjson

from facmon.facility.model import Role
from tests.api.conftest import session_token
from tests.http_server import serving
from tests.publishing import feed

Event = tuple[str, str | None, dict]  # name, id, data


@contextmanager
def listening(base: str, token: str, **params: str) -> Iterator[queue.Queue[Event]]:
    """The stream's events as they arrive, on a queue; `last_event_id` is sent as the header."""
    events: queue.Queue[Event] = queue.Queue()
    headers = {"Authorization": f"Bearer {token}"}
    if "last_event_id" in params:
        headers["Last-Event-ID"] = params.pop("last_event_id")
    stop = threading.Event()

    def read() -> None:
        try:
            _read()
        except httpx.HTTPError:
            if not stop.is_set():  # the server going away at the end is expected, not before
                raise

    def _read() -> None:
        with (
            httpx.Client(base_url=base, timeout=httpx.Timeout(5, read=None)) as client,
            client.stream("GET", "/api/v1/stream", headers=headers, params=params) as response,
        ):
            assert response.status_code == 200
            name, event_id, data = "message", None, b""
            for line in response.iter_lines():
                if stop.is_set():
                    return
                if line.startswith("retry: "):
                    events.put(("open", None, {}))  # the stream's first line: it reads from here on
                elif line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("id: "):
                    event_id = line[4:]
                elif line.startswith("data: "):
                    data = line[6:].encode()
                elif line == "" and data:
                    events.put((name, event_id, orjson.loads(data)))
                    name, event_id, data = "message", None, b""

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    take(events, "open")
    try:
        yield events
    finally:
        stop.set()


def take(events: queue.Queue[Event], name: str, timeout: float = 10) -> Event:
    """The next event called `name`, skipping others."""
    while True:
        event = events.get(timeout=timeout)
        if event[0] == name:
            return event


def gather(events: queue.Queue[Event], names: set[str], quiet: float = 1.5) -> dict[str, list[Event]]:
    """Every event until one of each of `names` has come and then nothing for `quiet` seconds, by name."""
    seen: dict[str, list[Event]] = {}
    while True:
        try:
            event = events.get(timeout=quiet if names <= set(seen) else 10)
        except queue.Empty:
            if names <= set(seen):
                return seen
            raise
        seen.setdefault(event[0], []).append(event)


def test_changes_and_readings_arrive_live_and_a_reconnect_resumes(service) -> None:
    svc, clock, api = service
    token = session_token(svc.app.state.services, "wall.screen", Role.VIEWER)
    with serving(svc.app) as base:
        assert httpx.get(f"{base}/api/v1/stream", timeout=5).status_code == 401
        with listening(base, token) as events:
            feed(svc, clock, "smoke", "smoke-B-05", {"state": "alarm", "battery_pct": 88})
            seen = gather(events, {"alarm", "work_order", "reading"})
            first_id, data = seen["alarm"][0][1], seen["alarm"][0][2]
            assert data["kind"] == "raised" and data["alarm"]["device_id"] == "smoke-B-05"
            assert data["alarm"]["state"] == "active_unacked" and first_id is not None
            opened = seen["work_order"][0][2]
            assert opened["event"]["kind"] == "opened" and opened["work_order"]["priority"] == "P1"
            [(_, reading_id, reading)] = seen["reading"]
            assert reading["device_id"] == "smoke-B-05" and reading["latest"]["battery_pct"] == 88
            assert reading_id is None  # readings are not replayed
            ids = [event_id for name in ("alarm", "work_order") for _, event_id, _ in seen[name]]
            last_id = max(ids, key=lambda i: tuple(int(n) for n in str(i).split("-")))

        # While nobody listens, an operator acknowledges.
        alarm_id = data["alarm"]["id"]
        assert api.post(f"/api/v1/alarms/{alarm_id}/ack", json={"note": "on my way"}).status_code == 200
        with listening(base, token, last_event_id=last_id, types="alarm") as events:
            _, _, missed = take(events, "alarm")
            assert (missed["kind"], missed["actor"], missed["note"]) == ("acknowledged", "li.na", "on my way")
            assert missed["alarm"]["state"] == "active_acked"
            assert events.empty() or events.get(timeout=1.5)[2].get("kind") != "raised"  # not the old ones again

        bad = httpx.get(f"{base}/api/v1/stream", headers={"Authorization": f"Bearer {token}", "Last-Event-ID": "x"})
        assert bad.status_code == 422


def test_a_missing_id_holds_back_what_follows_a_moment_then_is_given_up() -> None:
    from facmon.api.routes.stream import Gaps

    gaps = Gaps(wait_s=2.0)
    assert gaps.ready("alarm", 10, [11, 12, 13], now=0.0) == 3  # no gap
    # 15 committed before 14: wait for 14 rather than skip it for good.
    assert gaps.ready("alarm", 13, [15, 16], now=1.0) == 0
    assert gaps.ready("alarm", 13, [15, 16], now=2.5) == 0
    assert gaps.ready("alarm", 13, [14, 15, 16], now=2.9) == 3  # it came
    # A rolled-back id never comes: after the wait, what follows it goes out.
    assert gaps.ready("work_order", 3, [5], now=10.0) == 0
    assert gaps.ready("work_order", 3, [5], now=12.0) == 1
    assert gaps.ready("alarm", 20, [21, 23], now=20.0) == 1  # up to the gap
