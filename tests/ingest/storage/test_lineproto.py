"""Line protocol of readings: escaping per the InfluxDB reference, fields typed by the contract."""

from __future__ import annotations

import pytest

from facmon.facility.model import Device, DeviceType, Reading
from facmon.ingest.storage.lineproto import LineEncoder, escape_key, escape_measurement, quote_string, series_prefix

PUMP = Device("pump-1", DeviceType.PUMP, "riverside", "A", "Booster pump 1")
LIFT = Device("lift-1", DeviceType.ELEVATOR, "riverside", "A", "Lift 1")
POWER = Device("power-1", DeviceType.POWER, "riverside", "B", "Main meter")
PREFIX = "pump,building=A,device_id=pump-1,device_type=pump,site=riverside"


@pytest.fixture
def encoder() -> LineEncoder:
    return LineEncoder([PUMP, LIFT, POWER])


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("plain", "plain"),
        ("with space", r"with\ space"),
        ("a,b", r"a\,b"),
        ("k=v", r"k\=v"),
        ("a, b=c", r"a\,\ b\=c"),
        ("quote\"s and 'single'", "quote\"s\\ and\\ 'single'"),
        ("中文", "中文"),
    ],
)
def test_tag_keys_and_values_escape_commas_equals_signs_and_spaces(raw: str, escaped: str) -> None:
    assert escape_key(raw) == escaped


def test_a_measurement_escapes_commas_and_spaces_but_not_equals_signs() -> None:
    assert escape_measurement("a b,c=d") == r"a\ b\,c=d"


@pytest.mark.parametrize("bad", ["back\\slash", "ends\\", "two\nlines", "carriage\rreturn", ""])
def test_a_tag_value_influxdb_cannot_keep_is_refused(bad: str) -> None:
    # InfluxDB keeps `\\` in a tag as two backslashes, and a line break ends the line.
    with pytest.raises(ValueError, match="InfluxDB"):
        escape_key(bad)


@pytest.mark.parametrize(
    ("raw", "quoted"),
    [
        ("plain", '"plain"'),
        ("with space, comma=equals", '"with space, comma=equals"'),
        ('say "hi"', r'"say \"hi\""'),
        ("back\\slash", r'"back\\slash"'),
        ("ends with\\", r'"ends with\\"'),
        ('\\"', r'"\\\""'),
        ("two\nlines", '"two\nlines"'),
    ],
)
def test_string_fields_escape_double_quotes_and_backslashes_only(raw: str, quoted: str) -> None:
    assert quote_string(raw) == quoted


def test_tags_are_sorted_by_key_and_escaped_once_per_device() -> None:
    odd = Device("p 1", DeviceType.PUMP, "north site", "b,1=2", "Odd")

    assert series_prefix(PUMP) == PREFIX
    assert series_prefix(odd) == r"pump,building=b\,1\=2,device_id=p\ 1,device_type=pump,site=north\ site"


def test_a_reading_is_one_line_with_ms_timestamp(encoder: LineEncoder) -> None:
    reading = Reading("pump-1", 1_700_000_000_123, {"pressure_bar": 4.25, "pump_running": True, "pump_id": "P1"}, 17)

    assert encoder.line(reading) == f'{PREFIX} pressure_bar=4.25,pump_running=true,pump_id="P1",seq=17i 1700000000123'


def test_numbers_are_always_floats_and_integers_always_carry_i(encoder: LineEncoder) -> None:
    power = encoder.line(Reading("power-1", 1, {"voltage_l1_v": 230, "energy_kwh": 1e16, "frequency_hz": 49.99}))
    lift = encoder.line(Reading("lift-1", 1, {"state": "idle", "floor": -2, "trips": 0}))

    assert power is not None
    assert power.split(" ")[1] == "voltage_l1_v=230.0,energy_kwh=1e+16,frequency_hz=49.99"
    assert lift is not None
    assert lift.split(" ")[1] == 'state="idle",floor=-2i,trips=0i'


def test_booleans_are_true_and_false(encoder: LineEncoder) -> None:
    line = encoder.line(Reading("lift-1", 5, {"state": "fault", "entrapment": True, "alarm_button": False}))

    assert line == (
        "elevator,building=A,device_id=lift-1,device_type=elevator,site=riverside "
        'state="fault",entrapment=true,alarm_button=false 5'
    )


def test_a_string_field_with_every_special_character(encoder: LineEncoder) -> None:
    line = encoder.line(Reading("pump-1", 5, {"pump_id": 'a b,c=d"e\\f\ng'}))

    assert line == f'{PREFIX} pump_id="a b,c=d\\"e\\\\f\ng" 5'


def test_a_null_is_left_out_and_seq_is_optional(encoder: LineEncoder) -> None:
    line = encoder.line(Reading("lift-1", 5, {"state": "idle", "fault_code": None}))

    assert line is not None
    assert line.endswith(' state="idle" 5')


def test_a_reading_with_nothing_to_store_has_no_line(encoder: LineEncoder) -> None:
    assert encoder.line(Reading("lift-1", 5, {"fault_code": None})) is None
    assert encoder.line(Reading("lift-1", 5, {"fault_code": None}, seq=3)) is not None


def test_fields_outside_the_contract_are_not_written(encoder: LineEncoder) -> None:
    line = encoder.line(Reading("pump-1", 5, {"pressure_bar": 1.0, "colour": "red"}))

    assert line == f"{PREFIX} pressure_bar=1.0 5"


def test_an_unregistered_device_is_refused(encoder: LineEncoder) -> None:
    with pytest.raises(ValueError, match="'pump-9' is not registered"):
        encoder.line(Reading("pump-9", 5, {"pressure_bar": 1.0}))


def test_lines_of_a_batch_keep_its_order_and_skip_empty_readings(encoder: LineEncoder) -> None:
    lines = encoder.lines(
        [
            Reading("pump-1", 2, {"pressure_bar": 2.0}),
            Reading("lift-1", 1, {"fault_code": None}),
            Reading("pump-1", 1, {"pressure_bar": 1.0}),
        ]
    )

    assert lines == [f"{PREFIX} pressure_bar=2.0 2", f"{PREFIX} pressure_bar=1.0 1"]


def test_a_device_whose_id_cannot_be_a_tag_is_refused_when_the_encoder_is_built() -> None:
    with pytest.raises(ValueError, match="backslash"):
        LineEncoder([Device("bad\\id", DeviceType.PUMP, "s", "b", "Bad")])
