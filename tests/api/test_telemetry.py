"""`GET /api/v1/devices/{id}/telemetry` over the real SQLite telemetry store, with readings fed into the pipeline.

The service's clock starts at 02:00 in Shanghai (18:00 UTC), on a minute boundary of the epoch-aligned windows.
"""

from __future__ import annotations

import sqlite3

import pytest

from tests.publishing import feed

URL = "/api/v1/devices/pump-1/telemetry"
# pump-1 from 02:00:00, one reading every 20 s: two minutes of (pressure_bar, pump_running).
READINGS = [(4.0, True), (3.0, True), (3.5, False), (2.0, False), (3.0, True), (2.5, True)]


@pytest.fixture
def pump(service):
    """Two minutes of pump-1, fed at 02:00:00, 02:00:20 … 02:01:40; the clock is left at 02:02:00."""
    svc, clock, api = service
    for pressure, running in READINGS:
        feed(svc, clock, "pump", "pump-1", {"pressure_bar": pressure, "pump_running": running})
        clock.advance(seconds=20)
    return svc, clock, api


def _error(response) -> tuple[str, str]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    (error,) = response.json()["errors"]
    return error["loc"], error["msg"]


def test_a_short_span_answers_the_raw_readings_in_order(pump) -> None:
    _, _, api = pump
    response = api.get(URL, params={"field": "pressure_bar", "start": "-10m"})
    assert response.status_code == 200
    assert response.json() == {
        "device_id": "pump-1",
        "field": "pressure_bar",
        "start": "2026-11-22T01:52:00+08:00",
        "stop": "2026-11-22T02:02:00+08:00",
        "every": None,
        "agg": None,
        "points": [
            {"t": "2026-11-22T02:00:00+08:00", "v": 4.0},
            {"t": "2026-11-22T02:00:20+08:00", "v": 3.0},
            {"t": "2026-11-22T02:00:40+08:00", "v": 3.5},
            {"t": "2026-11-22T02:01:00+08:00", "v": 2.0},
            {"t": "2026-11-22T02:01:20+08:00", "v": 3.0},
            {"t": "2026-11-22T02:01:40+08:00", "v": 2.5},
        ],
        "total": 6,
    }


@pytest.mark.parametrize(
    ("agg", "first", "second"),
    [("max", 4.0, 3.0), ("min", 3.0, 2.0), ("mean", 3.5, 2.5), ("count", 3, 3), ("last", 3.5, 2.5)],
)
def test_each_aggregate_over_one_minute_windows(pump, agg: str, first: float, second: float) -> None:
    _, _, api = pump
    body = api.get(URL, params={"field": "pressure_bar", "start": "-10m", "every": "1m", "agg": agg}).json()
    assert (body["every"], body["agg"], body["total"]) == ("1m", agg, 2)
    assert body["points"] == [
        {"t": "2026-11-22T02:00:00+08:00", "v": first},
        {"t": "2026-11-22T02:01:00+08:00", "v": second},
    ]
    if agg == "count":
        assert all(type(p["v"]) is int for p in body["points"])


def test_start_relative_to_now_leaves_out_older_readings(service) -> None:
    svc, clock, api = service
    feed(svc, clock, "pump", "pump-1", {"pressure_bar": 4.0})
    clock.advance(minutes=90)
    feed(svc, clock, "pump", "pump-1", {"pressure_bar": 3.9})
    clock.advance(minutes=1)  # 03:31

    body = api.get(URL, params={"field": "pressure_bar", "start": "-1h", "stop": "now"}).json()
    assert (body["start"], body["stop"]) == ("2026-11-22T02:31:00+08:00", "2026-11-22T03:31:00+08:00")
    assert body["points"] == [{"t": "2026-11-22T03:30:00+08:00", "v": 3.9}]

    body = api.get(URL, params={"field": "pressure_bar", "start": "-2h", "every": "1h", "agg": "count"}).json()
    assert body["points"] == [
        {"t": "2026-11-22T02:00:00+08:00", "v": 1},
        {"t": "2026-11-22T03:00:00+08:00", "v": 1},
    ]


def test_rfc3339_start_and_stop_in_any_offset_stop_excluded(pump) -> None:
    _, _, api = pump
    params = {"field": "pressure_bar", "start": "2026-11-22T02:00:20+08:00", "stop": "2026-11-21T18:01:00Z"}
    body = api.get(URL, params=params).json()
    assert (body["start"], body["stop"]) == ("2026-11-22T02:00:20+08:00", "2026-11-22T02:01:00+08:00")
    assert body["points"] == [
        {"t": "2026-11-22T02:00:20+08:00", "v": 3.0},
        {"t": "2026-11-22T02:00:40+08:00", "v": 3.5},
    ]
    # The same, with the `+` of the offset left unencoded in the URL, where it reads as a space.
    unencoded = api.get(f"{URL}?field=pressure_bar&start=2026-11-22T02:00:20+08:00&stop=2026-11-21T18:01:00Z")
    assert unencoded.json() == body


def test_a_long_span_is_aggregated_over_a_step_chosen_for_max_points(pump) -> None:
    _, _, api = pump
    # -24h to now at 02:02: 1m would give 1440 windows, 5m gives 289.
    body = api.get(URL, params={"field": "pressure_bar"}).json()
    assert (body["every"], body["agg"]) == ("5m", "mean")
    assert body["points"] == [{"t": "2026-11-22T02:00:00+08:00", "v": 3.0}]

    body = api.get(URL, params={"field": "pressure_bar", "max_points": 100, "agg": "max"}).json()
    assert (body["every"], body["agg"]) == ("30m", "max")  # 10m would give 145
    assert body["points"] == [{"t": "2026-11-22T02:00:00+08:00", "v": 4.0}]

    # A boolean is aggregated with `last` unless told otherwise.
    body = api.get(URL, params={"field": "pump_running", "start": "-7d"}).json()
    assert (body["every"], body["agg"]) == ("30m", "last")
    assert body["points"] == [{"t": "2026-11-22T02:00:00+08:00", "v": True}]


def test_more_raw_readings_than_max_points_are_aggregated_too(service) -> None:
    svc, clock, api = service
    for n in range(7):  # a backlog: seven readings within one second
        feed(svc, clock, "pump", "pump-1", {"pressure_bar": 3.0 + n / 4})
        clock.advance(milliseconds=100)
    body = api.get(URL, params={"field": "pressure_bar", "start": "-5s", "max_points": 5, "agg": "max"}).json()
    # 1s windows would be 6 from 01:59:55.700 to 02:00:00.700, 5s windows are 2.
    assert (body["every"], body["agg"], body["total"]) == ("5s", "max", 1)
    assert body["points"] == [{"t": "2026-11-22T02:00:00+08:00", "v": 4.5}]


def test_a_boolean_field_takes_last_or_count_but_not_mean(pump) -> None:
    _, _, api = pump
    loc, msg = _error(api.get(URL, params={"field": "pump_running", "every": "1m", "agg": "mean", "start": "-5m"}))
    assert (loc, msg) == ("query.agg", "mean needs a numeric field; pump_running is a boolean: use last or count")
    # Also when the span is short enough for raw readings: the request does not depend on the span.
    assert _error(api.get(URL, params={"field": "pump_running", "agg": "max", "start": "-5m"}))[0] == "query.agg"

    body = api.get(URL, params={"field": "pump_running", "every": "1m", "agg": "last", "start": "-5m"}).json()
    assert body["points"] == [
        {"t": "2026-11-22T02:00:00+08:00", "v": False},
        {"t": "2026-11-22T02:01:00+08:00", "v": True},
    ]
    raw = api.get(URL, params={"field": "pump_running", "start": "-5m"}).json()
    assert [p["v"] for p in raw["points"]] == [running for _, running in READINGS]


def test_an_unknown_field_names_the_fields_of_the_device_type(pump) -> None:
    _, _, api = pump
    loc, msg = _error(api.get(URL, params={"field": "pressure"}))
    assert loc == "query.field"
    assert msg == (
        "pump devices have no field 'pressure'; "
        "they have pressure_bar, inlet_pressure_bar, flow_m3h, pump_running, pump_id"
    )
    assert _error(api.get(URL))[0] == "query.field"  # required


@pytest.mark.parametrize(
    ("params", "loc", "says"),
    [
        ({"start": "yesterday"}, "query.start", "'yesterday' is not a time: use RFC 3339 with an offset"),
        ({"start": "2026-11-22T01:00:00"}, "query.start", "it has no offset"),
        ({"start": "-1x"}, "query.start", "'1x' is not a duration"),
        ({"start": "-9999999999d"}, "query.start", "out of range"),
        ({"stop": "tomorrow"}, "query.stop", "'tomorrow' is not a time"),
        ({"start": "-1h", "stop": "-2h"}, "query.stop", "stop must be after start"),
        ({"every": "soon"}, "query.every", "'soon' is not a duration"),
        ({"every": "500ms"}, "query.every", "every must be at least 1s"),
        ({"agg": "median"}, "query.agg", "Input should be 'mean', 'min', 'max', 'last' or 'count'"),
        ({"max_points": "0"}, "query.max_points", "greater than or equal to 1"),
        ({"max_points": "10001"}, "query.max_points", "less than or equal to 10000"),
    ],
)
def test_bad_parameters_are_422_naming_the_parameter(service, params: dict[str, str], loc: str, says: str) -> None:
    _, _, api = service
    got_loc, msg = _error(api.get(URL, params={"field": "pressure_bar", **params}))
    assert got_loc == loc
    assert says in msg
    assert "\n" not in msg


def test_an_every_giving_more_than_max_points_is_422(pump) -> None:
    _, _, api = pump
    loc, msg = _error(api.get(URL, params={"field": "pressure_bar", "every": "1m"}))
    assert loc == "query.every"
    assert msg.startswith("1m gives 1440 points from start to stop, more than max_points=1000")
    body = api.get(URL, params={"field": "pressure_bar", "every": "1m", "max_points": 1440}).json()
    assert (body["every"], body["total"]) == ("1m", 2)


def test_an_unknown_device_is_404(service) -> None:
    _, _, api = service
    response = api.get("/api/v1/devices/pump-9/telemetry", params={"field": "pressure_bar"})
    assert response.status_code == 404
    assert response.json()["detail"] == "device 'pump-9' not found"


def test_a_telemetry_store_that_cannot_be_read_is_503(pump) -> None:
    svc, _, api = pump
    with sqlite3.connect(svc.config.storage.telemetry.path) as conn:
        conn.execute("DROP TABLE pump")
    response = api.get(URL, params={"field": "pressure_bar", "start": "-10m"})
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["title"] == "Telemetry store unavailable"
    assert "no such table: pump" in body["detail"]


@pytest.mark.parametrize(
    ("params", "loc", "says"),
    [
        ({"every": "1000000000d"}, "query.every", "'1000000000d' is out of range"),
        ({"start": "0001-01-01T00:00:00+04:00"}, "query.start", "is out of range"),  # the year 0 in UTC
        ({"stop": "9999-12-31T23:59:59Z"}, "query.stop", "is out of range"),  # the year 10000 in Shanghai
    ],
)
def test_times_and_durations_beyond_the_calendar_are_422_not_server_errors(service, params, loc, says) -> None:
    # They overflowed a timedelta, or a datetime when the answer's times were put in the facility's time zone.
    _, _, api = service
    got_loc, msg = _error(api.get(URL, params={"field": "pressure_bar", **params}))
    assert got_loc == loc
    assert says in msg


def test_the_earliest_and_latest_times_there_are_are_answered(service) -> None:
    _, _, api = service
    params = {"field": "pressure_bar", "start": "0001-01-02T00:00:00Z", "stop": "9999-12-30T00:00:00Z"}
    body = api.get(URL, params=params).json()
    assert (body["stop"], body["total"]) == ("9999-12-30T08:00:00+08:00", 0)
    assert body["start"].startswith("0001-01-02T08:05")  # Shanghai's local mean time, before time zones
