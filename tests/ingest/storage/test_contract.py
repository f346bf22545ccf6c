"""The telemetry store contract, checked on every backend: SQLite, InfluxDB 1 (a real influxd), InfluxDB 2.

What one backend answers, all answer: same values, same Python types, same windows, same bounds.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path

import pytest

from facmon.config.registry import DeviceRegistry
from facmon.config.storage import TelemetryStorageConfig
from facmon.facility.model import Reading, Scalar
from facmon.ingest.decode import MAX_INT64
from facmon.ingest.errors import ReadingsRefusedError, TelemetryStoreError
from facmon.ingest.storage import Aggregate, Point, TelemetryStore, open_telemetry_store
from facmon.ingest.storage.influx import WRITE_CHUNK, InfluxV1Store, InfluxV2Store
from facmon.ingest.storage.sqlite import SqliteTelemetryStore
from tests.ingest.storage.conftest import NASTY_FLUX, NASTY_INFLUXQL, Influxd, free_port

# 2023-11-14T22:14:00Z: a whole minute, so windows of 1 s to 1 min start at T.
T = 1_700_000_040_000
MINUTE = 60_000


def pump(ts: int, seq: int | None = None, **fields: Scalar) -> Reading:
    return Reading("pump-1", ts, fields, seq)


def values(points: Sequence[Point]) -> list[tuple[int, Scalar]]:
    return [(p.ts_ms, p.value) for p in points]


def kinds(points: Sequence[Point]) -> set[type]:
    return {type(p.value) for p in points}


# --- raw history ---------------------------------------------------------------------------------------------


def test_raw_query_answers_in_time_order_with_each_kinds_python_type(store: TelemetryStore) -> None:
    store.write(
        [
            pump(T + 3000, pressure_bar=4.25, pump_running=True, pump_id="P-3"),
            pump(T + 1000, pressure_bar=3.5, pump_running=False, pump_id="P-1"),
            pump(T + 2000, pressure_bar=3.75, pump_running=True, pump_id="P-2"),
        ]
    )
    window = (T, T + MINUTE)

    pressure = store.query("pump-1", "pressure_bar", *window)
    running = store.query("pump-1", "pump_running", *window)
    ids = store.query("pump-1", "pump_id", *window)

    assert values(pressure) == [(T + 1000, 3.5), (T + 2000, 3.75), (T + 3000, 4.25)]
    assert values(running) == [(T + 1000, False), (T + 2000, True), (T + 3000, True)]
    assert values(ids) == [(T + 1000, "P-1"), (T + 2000, "P-2"), (T + 3000, "P-3")]
    assert kinds(pressure) == {float}
    assert kinds(running) == {bool}
    assert kinds(ids) == {str}


def test_a_field_left_out_of_a_reading_has_no_point_there(store: TelemetryStore) -> None:
    store.write([pump(T, pressure_bar=1.0, flow_m3h=12.5), pump(T + 1000, pressure_bar=2.0)])

    assert values(store.query("pump-1", "flow_m3h", T, T + MINUTE)) == [(T, 12.5)]
    assert values(store.query("pump-1", "inlet_pressure_bar", T, T + MINUTE)) == []


def test_a_resent_reading_is_stored_once(store: TelemetryStore) -> None:
    reading = pump(T, seq=7, pressure_bar=4.0, pump_running=True)
    store.write([reading])
    store.write([reading, pump(T + 1000, seq=8, pressure_bar=4.5)])
    store.write([reading])

    assert values(store.query("pump-1", "pressure_bar", T, T + MINUTE)) == [(T, 4.0), (T + 1000, 4.5)]
    assert values(store.query("pump-1", "pressure_bar", T, T + MINUTE, every_ms=MINUTE, agg=Aggregate.COUNT)) == [
        (T, 2)
    ]


def test_integers_stay_integers_and_numbers_sent_as_integers_come_back_as_floats(store: TelemetryStore) -> None:
    store.write(
        [
            Reading("lift-1", T, {"state": "running", "floor": 3, "trips": 1200}),
            Reading("lift-1", T + 1000, {"state": "idle", "floor": -2, "trips": 1201}),
            Reading("power-1", T, {"voltage_l1_v": 230, "frequency_hz": 50}),
            Reading("power-1", T + 1000, {"voltage_l1_v": 229.5, "frequency_hz": 50.02}),
        ]
    )

    floors = store.query("lift-1", "floor", T, T + MINUTE)
    volts = store.query("power-1", "voltage_l1_v", T, T + MINUTE)
    hertz = store.query("power-1", "frequency_hz", T, T + MINUTE)

    assert values(floors) == [(T, 3), (T + 1000, -2)]
    assert kinds(floors) == {int}
    assert values(volts) == [(T, 230.0), (T + 1000, 229.5)]
    assert kinds(volts) == {float}
    assert values(hertz) == [(T, 50.0), (T + 1000, 50.02)]
    assert kinds(hertz) == {float}


def test_the_largest_values_ingest_accepts_are_stored_exactly(store: TelemetryStore) -> None:
    # The decoder's edges: each store must hold what it lets through, or a reading would stall ingest.
    store.write(
        [
            Reading("lift-1", T, {"state": "running", "trips": MAX_INT64}, seq=MAX_INT64),
            Reading("power-1", T, {"voltage_l1_v": 230.0, "energy_kwh": MAX_INT64}),
            Reading("power-1", T + 1000, {"voltage_l1_v": 230.0, "energy_kwh": sys.float_info.max}),
        ]
    )

    assert values(store.query("lift-1", "trips", T, T + MINUTE)) == [(T, MAX_INT64)]
    assert values(store.query("power-1", "energy_kwh", T, T + MINUTE)) == [
        (T, float(MAX_INT64)),
        (T + 1000, sys.float_info.max),
    ]


def test_a_value_past_the_stores_range_is_refused_for_itself_not_taken_for_an_outage(store: TelemetryStore) -> None:
    # Past the decoder's edge (it never lets this through): the store says the readings are at fault, so
    # ingest rejects them alone instead of spooling them and retrying for ever.
    with pytest.raises(ReadingsRefusedError):
        store.write([Reading("lift-1", T, {"state": "running", "trips": MAX_INT64 + 1})])
    store.write([Reading("lift-1", T, {"state": "running", "trips": 1})])
    assert values(store.query("lift-1", "trips", T, T + MINUTE)) == [(T, 1)]


def test_booleans_come_back_as_booleans(store: TelemetryStore) -> None:
    store.write(
        [
            Reading("lift-1", T, {"state": "fault", "entrapment": True, "alarm_button": False}),
            Reading("lift-1", T + 5000, {"state": "fault", "entrapment": False, "alarm_button": True}),
        ]
    )

    entrapment = store.query("lift-1", "entrapment", T, T + MINUTE)
    last = store.query("lift-1", "alarm_button", T, T + MINUTE, every_ms=MINUTE, agg=Aggregate.LAST)

    assert values(entrapment) == [(T, True), (T + 5000, False)]
    assert kinds(entrapment) == {bool}
    assert values(last) == [(T, True)]
    assert kinds(last) == {bool}


ODD_STRINGS = [
    "with space",
    "comma,separated",
    'double "quoted"',
    "single 'quoted'",
    "key=value",
    "back\\slash",
    "ends with a backslash\\",
    '\\"',
    "two\nlines",
    "tab\there",
    "Zhōngwén 中文 ✓",
    "# not a comment",
]


def test_strings_with_special_characters_round_trip(store: TelemetryStore) -> None:
    store.write([pump(T + i * 1000, pressure_bar=1.0, pump_id=text) for i, text in enumerate(ODD_STRINGS)])

    stored = store.query("pump-1", "pump_id", T, T + MINUTE)

    assert [p.value for p in stored] == ODD_STRINGS


def test_a_null_value_is_left_out_and_hides_no_older_value(store: TelemetryStore) -> None:
    store.write(
        [
            Reading("lift-1", T, {"state": "fault", "fault_code": "E12"}),
            Reading("lift-1", T + 1000, {"state": "idle", "fault_code": None}),
        ]
    )

    assert values(store.query("lift-1", "fault_code", T, T + MINUTE)) == [(T, "E12")]
    assert store.latest("lift-1") == (T + 1000, {"state": "idle", "fault_code": "E12"})


@pytest.mark.parametrize("device_id", ["A-1.x_y", "pump-odd"])
def test_devices_with_odd_but_allowed_ids_and_places_round_trip(store: TelemetryStore, device_id: str) -> None:
    store.write([Reading(device_id, T, {"pressure_bar": 2.5}), pump(T, pressure_bar=9.0)])

    assert values(store.query(device_id, "pressure_bar", T, T + 1)) == [(T, 2.5)]
    assert store.latest(device_id) == (T, {"pressure_bar": 2.5})


def test_start_is_inclusive_and_stop_exclusive(store: TelemetryStore) -> None:
    store.write([pump(T + i * 1000, pressure_bar=float(i)) for i in range(4)])

    assert values(store.query("pump-1", "pressure_bar", T + 1000, T + 3000)) == [(T + 1000, 1.0), (T + 2000, 2.0)]
    assert values(store.query("pump-1", "pressure_bar", T + 3000, T + 3001)) == [(T + 3000, 3.0)]
    assert store.query("pump-1", "pressure_bar", T + 3001, T + 9000) == []
    counted = store.query("pump-1", "pressure_bar", T + 1000, T + 3000, every_ms=1000, agg=Aggregate.COUNT)
    assert values(counted) == [(T + 1000, 1), (T + 2000, 1)]


# --- aggregation ----------------------------------------------------------------------------------------------

# Readings spread so that windows of 10 s hold 3, 1, none and 1 of them, and windows of 7 s (not a divisor of
# T or of a minute) show whether windows start at multiples of `every` since the epoch.
SAMPLES = [(T + 1000, 1.0), (T + 4000, 3.0), (T + 9999, 5.5), (T + 10_000, 10.0), (T + 35_000, 7.25)]


def expected(start: int, stop: int, every: int, agg: Aggregate) -> list[tuple[int, Scalar]]:
    windows: dict[int, list[float]] = {}
    for ts, value in SAMPLES:
        if start <= ts < stop:
            windows.setdefault(ts - ts % every, []).append(value)
    reduce: dict[Aggregate, Callable[[list[float]], Scalar]] = {
        Aggregate.MEAN: lambda vs: sum(vs) / len(vs),
        Aggregate.MIN: min,
        Aggregate.MAX: max,
        Aggregate.LAST: lambda vs: vs[-1],
        Aggregate.COUNT: len,
    }
    return [(start_ms, reduce[agg](vs)) for start_ms, vs in sorted(windows.items())]


@pytest.mark.parametrize("agg", list(Aggregate))
@pytest.mark.parametrize(
    ("start", "stop", "every"),
    [
        (T, T + MINUTE, 10_000),  # aligned; the window at T + 20 s is empty and left out
        (T + 2000, T + 35_000, 10_000),  # unaligned bounds cut the first and the last window
        (T, T + MINUTE, 7000),  # windows at multiples of 7 s since the epoch, not since `start`
        (T - MINUTE, T + 2 * MINUTE, 30_000),
    ],
)
def test_aggregation_over_windows_aligned_to_the_epoch(
    store: TelemetryStore, agg: Aggregate, start: int, stop: int, every: int
) -> None:
    store.write([pump(ts, pressure_bar=value) for ts, value in SAMPLES])

    got = store.query("pump-1", "pressure_bar", start, stop, every_ms=every, agg=agg)

    want = expected(start, stop, every, agg)
    assert [p.ts_ms for p in got] == [ts for ts, _ in want]
    assert [p.value for p in got] == pytest.approx([value for _, value in want])
    assert kinds(got) == ({int} if agg is Aggregate.COUNT else {float})
    assert len(want) >= 2  # the case is not empty by mistake


def test_aggregates_of_an_integer_field(store: TelemetryStore) -> None:
    store.write(
        [Reading("lift-1", T + i * 1000, {"state": "running", "floor": floor}) for i, floor in enumerate([2, 5, 3])]
    )
    q = {"start_ms": T, "stop_ms": T + MINUTE, "every_ms": MINUTE}

    assert values(store.query("lift-1", "floor", agg=Aggregate.MIN, **q)) == [(T, 2)]
    assert values(store.query("lift-1", "floor", agg=Aggregate.MAX, **q)) == [(T, 5)]
    assert values(store.query("lift-1", "floor", agg=Aggregate.LAST, **q)) == [(T, 3)]
    assert kinds(store.query("lift-1", "floor", agg=Aggregate.MAX, **q)) == {int}
    mean = store.query("lift-1", "floor", agg=Aggregate.MEAN, **q)
    assert [p.ts_ms for p in mean] == [T]
    assert mean[0].value == pytest.approx(10 / 3)
    assert kinds(mean) == {float}


def test_last_and_count_of_a_string_field(store: TelemetryStore) -> None:
    states = ["idle", "running", "door_open", "idle"]
    store.write([Reading("lift-1", T + i * 20_000, {"state": s}) for i, s in enumerate(states)])

    last = store.query("lift-1", "state", T, T + 2 * MINUTE, every_ms=MINUTE, agg=Aggregate.LAST)
    count = store.query("lift-1", "state", T, T + 2 * MINUTE, every_ms=MINUTE, agg=Aggregate.COUNT)

    assert values(last) == [(T, "door_open"), (T + MINUTE, "idle")]
    assert values(count) == [(T, 3), (T + MINUTE, 1)]


# --- latest, other devices, injection -------------------------------------------------------------------------


def test_latest_is_the_newest_value_of_each_field_and_the_newest_ts(store: TelemetryStore) -> None:
    store.write(
        [
            pump(T, seq=1, pressure_bar=1.0, pump_running=True, pump_id="P-1"),
            pump(T + 5000, seq=2, pressure_bar=2.0),
            pump(T + 2000, seq=3, pump_running=False),
        ]
    )

    latest = store.latest("pump-1")

    assert latest == (T + 5000, {"pressure_bar": 2.0, "pump_running": False, "pump_id": "P-1"})
    assert latest is not None
    assert type(latest[1]["pressure_bar"]) is float
    assert type(latest[1]["pump_running"]) is bool


def test_latest_of_a_device_that_never_sent_is_none(store: TelemetryStore) -> None:
    store.write([pump(T, pressure_bar=1.0)])

    assert store.latest("pump-2") is None
    assert store.latest("not-registered") is None


def test_a_query_for_another_device_answers_nothing(store: TelemetryStore) -> None:
    store.write([pump(T, pressure_bar=1.0), Reading("power-1", T, {"voltage_l1_v": 231.0})])

    assert store.query("pump-2", "pressure_bar", T, T + MINUTE) == []
    assert store.query("pump-2", "pressure_bar", T, T + MINUTE, every_ms=MINUTE, agg=Aggregate.COUNT) == []
    assert store.query("not-registered", "pressure_bar", T, T + MINUTE) == []
    assert store.query("power-1", "pressure_bar", T, T + MINUTE) == []  # not a field of its type


@pytest.mark.parametrize(
    "device_id",
    [NASTY_INFLUXQL, NASTY_FLUX, "x' OR device_id =~ /.*/ OR '", 'x" or true or "', "pump-1' --"],
)
def test_a_device_id_is_a_value_never_query_text(store: TelemetryStore, device_id: str) -> None:
    store.write([pump(T, pressure_bar=1.0), Reading("pump-2", T, {"pressure_bar": 2.0})])

    assert store.query(device_id, "pressure_bar", T, T + MINUTE) == []
    assert store.query(device_id, "pressure_bar", T, T + MINUTE, every_ms=MINUTE, agg=Aggregate.MAX) == []
    assert store.latest(device_id) is None


@pytest.mark.parametrize("device_id", [NASTY_INFLUXQL, NASTY_FLUX])
def test_a_device_with_a_nasty_id_gets_its_own_data_and_no_other(store: TelemetryStore, device_id: str) -> None:
    store.write([pump(T, pressure_bar=1.0), Reading(device_id, T + 1000, {"pressure_bar": 3.0})])

    assert values(store.query(device_id, "pressure_bar", T, T + MINUTE)) == [(T + 1000, 3.0)]
    assert store.latest(device_id) == (T + 1000, {"pressure_bar": 3.0})


@pytest.mark.parametrize(
    "field", ['pressure_bar" FROM "pump"; DROP DATABASE "x', "pressure_bar) |> drop(", "*", "seq", "device_id"]
)
def test_a_field_not_in_the_contract_answers_nothing(store: TelemetryStore, field: str) -> None:
    store.write([pump(T, seq=4, pressure_bar=1.0)])

    assert store.query("pump-1", field, T, T + MINUTE) == []
    assert store.query("pump-1", field, T, T + MINUTE, every_ms=MINUTE, agg=Aggregate.COUNT) == []
    assert values(store.query("pump-1", "pressure_bar", T, T + MINUTE)) == [(T, 1.0)]


# --- writes ----------------------------------------------------------------------------------------------------


def test_a_batch_larger_than_one_request_is_stored_whole(store: TelemetryStore) -> None:
    n = 2 * WRITE_CHUNK + 7
    store.write([pump(T + i * 1000, seq=i, pressure_bar=float(i % 50)) for i in range(n)])

    day = 86_400_000
    counts = store.query("pump-1", "pressure_bar", T - day, T + 2 * day, every_ms=day, agg=Aggregate.COUNT)
    assert sum(int(p.value or 0) for p in counts) == n
    assert values(store.query("pump-1", "pressure_bar", T + (n - 1) * 1000, T + n * 1000)) == [
        (T + (n - 1) * 1000, float((n - 1) % 50))
    ]


def test_an_empty_batch_is_stored_without_complaint(store: TelemetryStore) -> None:
    store.write([])

    assert store.latest("pump-1") is None


def test_a_live_store_answers_ping(store: TelemetryStore) -> None:
    store.ping()


# --- retention ------------------------------------------------------------------------------------------------


def test_sqlite_retention_deletes_older_readings_and_counts_them(tmp_path: Path, registry: DeviceRegistry) -> None:
    day = 86_400_000
    now = T + 10 * day
    store = SqliteTelemetryStore(tmp_path / "telemetry.db", registry, retention_ms=7 * day)
    try:
        store.write(
            [
                pump(now - 9 * day, pressure_bar=1.0),
                pump(now - 7 * day - 1, pressure_bar=2.0),
                pump(now - 7 * day, pressure_bar=3.0),
                Reading("lift-1", now - 8 * day, {"state": "idle"}),
                Reading("lift-1", now - 1, {"state": "running"}),
            ]
        )

        assert store.apply_retention(now) == 3
        assert values(store.query("pump-1", "pressure_bar", 0, now)) == [(now - 7 * day, 3.0)]
        assert values(store.query("lift-1", "state", 0, now)) == [(now - 1, "running")]
        assert store.apply_retention(now) == 0
    finally:
        store.close()


@pytest.mark.parametrize("backend", ["influxdb-v1", "influxdb-v2"], indirect=True)
def test_influxdb_leaves_retention_to_the_server(store: TelemetryStore) -> None:
    store.write([pump(T, pressure_bar=1.0)])

    assert store.apply_retention(T + 10_000 * 86_400_000) == 0
    assert values(store.query("pump-1", "pressure_bar", T, T + 1)) == [(T, 1.0)]


# --- an InfluxDB that is not there ----------------------------------------------------------------------------


def unreachable(dialect: str, registry: DeviceRegistry) -> InfluxV1Store | InfluxV2Store:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    if dialect == "v1":
        return InfluxV1Store(url, "facmon", registry, timeout_s=5)
    return InfluxV2Store(url, "facmon", "telemetry", "not-a-token", registry, timeout_s=5)


@pytest.mark.parametrize("dialect", ["v1", "v2"])
def test_an_unreachable_influxdb_fails_with_a_one_line_reason(dialect: str, registry: DeviceRegistry) -> None:
    store = unreachable(dialect, registry)
    try:
        calls: list[Callable[[], object]] = [
            store.ping,
            lambda: store.write([pump(T, pressure_bar=1.0)]),
            lambda: store.query("pump-1", "pressure_bar", T, T + MINUTE),
            lambda: store.latest("pump-1"),
        ]
        for call in calls:
            with pytest.raises(TelemetryStoreError) as failure:
                call()
            message = str(failure.value)
            assert store.url in message
            assert "refused" in message.lower()
            assert "\n" not in message
    finally:
        store.close()


def test_influxdb_v1_names_a_missing_database(influxd: Influxd, registry: DeviceRegistry) -> None:
    store = InfluxV1Store(influxd.url, "no_such_database", registry)
    try:
        store.ping()  # the server is there
        with pytest.raises(TelemetryStoreError, match="database not found"):
            store.write([pump(T, pressure_bar=1.0)])
        with pytest.raises(TelemetryStoreError, match="database not found"):
            store.query("pump-1", "pressure_bar", T, T + MINUTE)
    finally:
        store.close()


def test_influxdb_v1_writes_to_and_reads_from_the_configured_retention_policy(
    influxd: Influxd, influx_v1_database: str, registry: DeviceRegistry
) -> None:
    influxd.query(f'CREATE RETENTION POLICY "facmon keep" ON "{influx_v1_database}" DURATION INF REPLICATION 1')
    config = TelemetryStorageConfig(
        backend="influxdb",
        dialect="v1",
        url=influxd.url,
        database=influx_v1_database,
        retention_policy="facmon keep",
        timeout=timedelta(seconds=10),
    )
    store = open_telemetry_store(config, registry)
    try:
        store.write([pump(T, pressure_bar=1.5)])

        assert values(store.query("pump-1", "pressure_bar", T, T + 1)) == [(T, 1.5)]
        assert store.latest("pump-1") == (T, {"pressure_bar": 1.5})
        default_policy = influxd.query('SELECT * FROM "pump"', database=influx_v1_database)
        assert "series" not in default_policy["results"][0]
        named_policy = influxd.query('SELECT "pressure_bar" FROM "facmon keep"."pump"', database=influx_v1_database)
        assert named_policy["results"][0]["series"][0]["values"] == [[T, 1.5]]
    finally:
        store.close()


def test_influxdb_v1_stores_the_schema_of_the_docs(
    influxd: Influxd, influx_v1_database: str, registry: DeviceRegistry
) -> None:
    store = InfluxV1Store(influxd.url, influx_v1_database, registry)
    try:
        store.write(
            [Reading("lift-1", T, {"state": "idle", "floor": 4, "entrapment": False, "fault_code": None}, seq=9)]
        )
    finally:
        store.close()

    fields = influxd.query('SHOW FIELD KEYS FROM "elevator"', database=influx_v1_database)
    tags = influxd.query('SHOW TAG KEYS FROM "elevator"', database=influx_v1_database)
    assert sorted(map(tuple, fields["results"][0]["series"][0]["values"])) == [
        ("entrapment", "boolean"),
        ("floor", "integer"),
        ("seq", "integer"),
        ("state", "string"),
    ]
    assert [row[0] for row in tags["results"][0]["series"][0]["values"]] == [
        "building",
        "device_id",
        "device_type",
        "site",
    ]
