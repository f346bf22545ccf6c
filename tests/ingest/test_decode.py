from __future__ import annotations

from datetime import datetime

import orjson
import pytest

from facmon.config.loader import load_config
from facmon.config.registry import DeviceRegistry
from facmon.ingest.decode import MAX_ELEMENT_REJECTS, Decoder
from tests.conftest import EXAMPLE

NOW_MS = 1_795_000_000_000  # 2026-11-18
PUMP = "facility/riverside/pump/pump-1/telemetry"
POWER = "facility/riverside/power/panel-1/telemetry"
LIFT = "facility/riverside/elevator/lift-A1/telemetry"
SMOKE = "facility/riverside/smoke/smoke-B-03/telemetry"


@pytest.fixture(scope="module")
def decoder() -> Decoder:
    registry = DeviceRegistry.from_config(load_config(EXAMPLE, env={}))
    return Decoder(registry, topic_prefix="facility", max_payload_bytes=256 * 1024, max_future_skew_ms=300_000)


def one(decoder: Decoder, topic: str, payload: object | bytes) -> tuple[list, list]:
    raw = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    decoded = decoder.decode(topic, raw, NOW_MS)
    return decoded.readings, decoded.rejects


def reason(decoder: Decoder, topic: str, payload: object | bytes) -> str:
    readings, rejects = one(decoder, topic, payload)
    assert not readings, readings
    [reject] = rejects
    return reject.reason


def test_valid_readings_of_each_type(decoder: Decoder) -> None:
    cases = [
        (PUMP, {"pressure_bar": 3.9, "pump_running": True, "flow_m3h": 12}),
        (POWER, {"voltage_l1_v": 229.5, "voltage_l2_v": 231, "frequency_hz": 50.01}),
        (LIFT, {"state": "running", "floor": 7, "direction": "up", "fault_code": None, "trips": 4}),
        (SMOKE, {"state": "normal", "battery_pct": 88.5}),
    ]
    for topic, payload in cases:
        [reading], rejects = one(decoder, topic, payload)
        assert rejects == []
        assert reading.fields == payload
        assert reading.ts_ms == NOW_MS


def epoch_ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def test_timestamps_and_seq(decoder: Decoder) -> None:
    [r], _ = one(decoder, PUMP, {"pressure_bar": 4, "ts": "2026-11-18T08:00:00+08:00", "seq": 7})
    assert (r.ts_ms, r.seq) == (epoch_ms("2026-11-18T00:00:00+00:00"), 7)
    [r], _ = one(decoder, PUMP, {"pressure_bar": 4, "ts": "2026-11-18T00:00:00.250Z"})
    assert r.ts_ms == epoch_ms("2026-11-18T00:00:00+00:00") + 250
    [r], _ = one(decoder, PUMP, {"pressure_bar": 4, "ts": NOW_MS - 1000})
    assert (r.ts_ms, r.seq) == (NOW_MS - 1000, None)


def test_backlog_array_judges_each_element(decoder: Decoder) -> None:
    payload = [
        {"pressure_bar": 4.0, "ts": NOW_MS - 3000, "seq": 1},
        {"pressure_bar": "high", "ts": NOW_MS - 2000, "seq": 2},
        {"pressure_bar": 3.8, "ts": NOW_MS - 1000, "seq": 3},
    ]
    readings, rejects = one(decoder, PUMP, payload)
    assert [r.seq for r in readings] == [1, 3]
    [reject] = rejects
    assert reject.reason == "[1] pressure_bar must be a number, got a string"
    assert orjson.loads(reject.payload)["seq"] == 2


@pytest.mark.parametrize(
    ("topic", "payload", "expected"),
    [
        (PUMP, b"\xff\xfe{", "payload is not valid UTF-8"),
        (PUMP, b'{"pressure_bar": 4', "payload is not valid JSON"),
        (PUMP, b'{"pressure_bar": NaN}', "payload is not valid JSON"),
        (PUMP, b"[" * 5000 + b"]" * 5000, "payload is not valid JSON"),
        (PUMP, b"42", "payload must be a JSON object or an array of objects"),
        (PUMP, b"[]", "payload is an empty array"),
        (PUMP, [1], "[0] expected a JSON object"),
        (PUMP, {"flow_m3h": 3}, "required field 'pressure_bar' is missing"),
        (PUMP, {"pressure_bar": True}, "pressure_bar must be a number, got a boolean"),
        (PUMP, {"pressure_bar": -0.5}, "pressure_bar -0.5 is below the plausible minimum 0"),
        (PUMP, b'{"pressure_bar": 1e400}', "payload is not valid JSON"),
        (PUMP, {"pressure_bar": 4, "pump_running": "yes"}, "pump_running must be true or false, got a string"),
        (POWER, {"frequency_hz": 50}, "at least one of voltage_l1_v, voltage_l2_v, voltage_l3_v is required"),
        (POWER, {"voltage_l1_v": 461}, "voltage_l1_v 461 is above the plausible maximum 460"),
        (LIFT, {"state": "flying"}, "state 'flying' is not one of idle, running"),
        (LIFT, {"state": "idle", "floor": 2.5}, "floor must be an integer, got 2.5"),
        (SMOKE, {"state": "normal", "obscuration_pct_per_m": 101}, "obscuration_pct_per_m 101 is above"),
        (SMOKE, {"state": None}, "state must not be null"),
        (PUMP, {"pressure_bar": 4, "ts": "yesterday"}, "ts 'yesterday' is not an RFC 3339 time"),
        (PUMP, {"pressure_bar": 4, "ts": "2026-11-18T00:00:00"}, "has no UTC offset"),
        (PUMP, {"pressure_bar": 4, "ts": NOW_MS + 301_000}, "ts is 301 s in the future (limit 300 s)"),
        (PUMP, {"pressure_bar": 4, "ts": 1000}, "ts is before 2000-01-01"),
        (PUMP, {"pressure_bar": 4, "ts": 1.5}, "ts must be an RFC 3339 string or integer epoch milliseconds"),
        (PUMP, {"pressure_bar": 4, "seq": -1}, "seq must be a non-negative integer"),
        ("facility/riverside/pump/pump-9/telemetry", {"pressure_bar": 4}, "unknown device 'pump-9'"),
        ("facility/riverside/power/pump-1/telemetry", {"pressure_bar": 4}, "device 'pump-1' is a pump, the topic says"),
        ("facility/lakeside/pump/pump-1/telemetry", {"pressure_bar": 4}, "belongs to site 'riverside'"),
        ("facility/riverside/pump/pump-1/status", {"pressure_bar": 4}, "not a telemetry topic"),
    ],
)
def test_bad_input_is_rejected_with_its_reason(decoder: Decoder, topic: str, payload: object, expected: str) -> None:
    assert expected in reason(decoder, topic, payload)


def test_infinity_in_json_is_refused(decoder: Decoder) -> None:
    assert "not valid JSON" in reason(decoder, PUMP, b'{"pressure_bar": Infinity}')


def test_oversize_payload_is_refused_without_parsing(decoder: Decoder) -> None:
    big = b'{"pressure_bar": 4, "pump_id": "' + b"x" * (1024 * 1024) + b'"}'
    [], [reject] = one(decoder, PUMP, big)
    assert reject.reason == f"payload of {len(big)} bytes is over the limit of 262144"
    assert len(reject.payload) == 64 * 1024


def test_unknown_fields_are_ignored_not_fatal(decoder: Decoder) -> None:
    [reading], rejects = one(decoder, PUMP, {"pressure_bar": 4, "rssi_dbm": -70})
    assert rejects == [] and reading.fields == {"pressure_bar": 4}


def test_voltage_bound_follows_the_device_nominal() -> None:
    text = """
sites: [{id: s, buildings: [{id: b, devices: [{id: p, type: power, name: P, nominal: {voltage_v: 400}}]}]}]
"""
    from facmon.config.loader import parse_config

    registry = DeviceRegistry.from_config(parse_config(text, env={}))
    decoder = Decoder(registry, topic_prefix="facility", max_payload_bytes=1024, max_future_skew_ms=0)
    ok = decoder.decode("facility/s/power/p/telemetry", b'{"voltage_l1_v": 790}', NOW_MS)
    bad = decoder.decode("facility/s/power/p/telemetry", b'{"voltage_l1_v": 801}', NOW_MS)
    assert len(ok.readings) == 1 and "above the plausible maximum 800" in bad.rejects[0].reason


# Past these, a store refuses the value (or Python's sqlite3 raises OverflowError): the decoder refuses first.
OUT_OF_RANGE = [
    (PUMP, b'{"pressure_bar": 4.0, "seq": 18446744073709551615}', "seq must be a non-negative integer"),
    (PUMP, b'{"pressure_bar": 4.0, "seq": 9223372036854775808}', "seq must be a non-negative integer"),
    (LIFT, b'{"state": "idle", "trips": 18446744073709551615}', "outside the 64-bit integer range"),
    (LIFT, b'{"state": "idle", "trips": 9223372036854775808}', "outside the 64-bit integer range"),
    (LIFT, b'{"state": "idle", "trips": 1e300}', "outside the 64-bit integer range"),
    (POWER, b'{"voltage_l1_v": 230, "energy_kwh": 18446744073709551615}', "outside the 64-bit integer range"),
    (PUMP, b'{"pressure_bar": 4.0, "ts": 18446744073709551615}', "ts is outside the 64-bit integer range"),
    (LIFT, b'{"state": "fault", "fault_code": "E\\u0000"}', "holds control characters"),
    (PUMP, b'{"pressure_bar": 4.0, "pump_id": "P1\\nP2"}', "holds control characters"),
]


@pytest.mark.parametrize(("topic", "payload", "expected"), OUT_OF_RANGE)
def test_values_the_stores_cannot_hold_are_refused(decoder: Decoder, topic: str, payload: bytes, expected: str) -> None:
    assert expected in reason(decoder, topic, payload)


def test_the_edges_of_the_stores_ranges_are_accepted(decoder: Decoder) -> None:
    [r], _ = one(decoder, LIFT, b'{"state": "idle", "trips": 9223372036854775807, "seq": 9223372036854775807}')
    assert (r.fields["trips"], r.seq) == (2**63 - 1, 2**63 - 1)
    [r], _ = one(decoder, POWER, b'{"voltage_l1_v": 230, "energy_kwh": 1.7976931348623157e308}')
    assert r.fields["energy_kwh"] == 1.7976931348623157e308
    [r], _ = one(decoder, LIFT, {"state": "fault", "fault_code": "困人 E31"})
    assert r.fields["fault_code"] == "困人 E31"


def test_a_nul_in_a_rejected_payload_is_kept_as_a_replacement_character(decoder: Decoder) -> None:
    # PostgreSQL's text cannot hold NUL: the reject keeps the payload with U+FFFD in its place.
    [reject] = one(decoder, PUMP, b'{"pressure_bar": "\x00"')[1]
    assert "\x00" not in reject.payload
    assert reject.payload == '{"pressure_bar": "\ufffd"'


def test_a_huge_backlog_of_bad_elements_is_a_bounded_number_of_rejects(decoder: Decoder) -> None:
    # 60,000 numbers in one array (240 KB, under the payload limit) once made 60,000 rows.
    readings, rejects = one(decoder, PUMP, [{"pressure_bar": 4.0}] + [1.5] * 60_000)
    assert len(readings) == 1
    assert len(rejects) == MAX_ELEMENT_REJECTS + 1
    assert rejects[-1].reason.startswith(f"[{MAX_ELEMENT_REJECTS + 1}..60000] {60_000 - MAX_ELEMENT_REJECTS} more")
