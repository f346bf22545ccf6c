"""InfluxDB line protocol for readings: a measurement per device type, the device's place as tags, typed fields.

    pump,building=A,device_id=p1,device_type=pump,site=north pressure_bar=4.0,pump_running=true,seq=7i 1700000000000

Fields are typed by the payload contract, never by the value: a number is always written as a float (`230` as
`230.0`) and an integer always with `i`, so a field never changes type, which InfluxDB refuses. A null is left
out, as InfluxDB has no null. Timestamps are epoch milliseconds: write with precision `ms`.

Escaping follows the line protocol reference: commas and spaces in the measurement, commas, equals signs and
spaces in tag keys, tag values and field keys, double quotes and backslashes in string fields. InfluxDB does not
unescape a backslash in a tag (`a\\b` is stored with two), so a tag value cannot hold one reliably; neither can it
hold a line break. Such a value is refused when the encoder is built: facmon's identifiers never contain them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from facmon.facility.model import Device, Reading
from facmon.facility.telemetry import FIELDS, Kind

_MEASUREMENT = str.maketrans({",": r"\,", " ": r"\ "})
_KEY = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})
_STRING = str.maketrans({"\\": "\\\\", '"': '\\"'})

# The codes used on the hot path, instead of comparing Kind members.
_NUMBER, _INTEGER, _BOOLEAN, _TEXT = range(4)
_CODE = {Kind.NUMBER: _NUMBER, Kind.INTEGER: _INTEGER, Kind.BOOLEAN: _BOOLEAN, Kind.STRING: _TEXT, Kind.ENUM: _TEXT}

SEQ_FIELD = "seq"


def escape_measurement(name: str) -> str:
    _check_tag_text(name)
    return name.translate(_MEASUREMENT)


def escape_key(text: str) -> str:
    """A tag key, tag value or field key."""
    _check_tag_text(text)
    return text.translate(_KEY)


def quote_string(value: str) -> str:
    """A string field value, quoted. A line break stays as it is: InfluxDB reads it as part of the quoted string."""
    return f'"{value.translate(_STRING)}"'


def _check_tag_text(text: str) -> None:
    if not text:
        raise ValueError("an empty name or tag value cannot be written to InfluxDB")
    for bad, what in (("\\", "a backslash"), ("\n", "a line break"), ("\r", "a line break")):
        if bad in text:
            raise ValueError(f"{text!r} cannot be a measurement, tag or field name in InfluxDB: it holds {what}")


def series_prefix(device: Device) -> str:
    """`measurement,tag=value,...` of a device, tags sorted by key as InfluxDB recommends."""
    tags = {"building": device.building, "device_id": device.id, "device_type": str(device.type), "site": device.site}
    tag_set = ",".join(f"{escape_key(k)}={escape_key(v)}" for k, v in sorted(tags.items()))
    return f"{escape_measurement(str(device.type))},{tag_set}"


class LineEncoder:
    """Readings of the registered devices as lines; each device's measurement and tags are escaped once."""

    def __init__(self, devices: Iterable[Device]) -> None:
        self._prefix: dict[str, str] = {}
        self._fields: dict[str, dict[str, tuple[str, int]]] = {}
        for device in devices:
            self._prefix[device.id] = series_prefix(device)
            self._fields[device.id] = {
                name: (escape_key(name), _CODE[spec.kind]) for name, spec in FIELDS[device.type].items()
            }

    def line(self, reading: Reading) -> str | None:
        """One line, or None when the reading has nothing InfluxDB can store (only nulls and no seq)."""
        try:
            prefix = self._prefix[reading.device_id]
        except KeyError:
            raise ValueError(f"device {reading.device_id!r} is not registered") from None
        specs = self._fields[reading.device_id]
        parts: list[str] = []
        for name, value in reading.fields.items():
            if value is None:
                continue
            spec = specs.get(name)
            if spec is None:
                continue  # not in the contract: ingest has refused it already, and the SQLite store drops it too
            key, code = spec
            if code == _NUMBER:
                parts.append(f"{key}={float(value)!r}")
            elif code == _INTEGER:
                parts.append(f"{key}={int(value)}i")
            elif code == _BOOLEAN:
                parts.append(f"{key}=true" if value else f"{key}=false")
            else:
                parts.append(f'{key}="{str(value).translate(_STRING)}"')
        if reading.seq is not None:
            parts.append(f"{SEQ_FIELD}={int(reading.seq)}i")
        if not parts:
            return None
        return f"{prefix} {','.join(parts)} {int(reading.ts_ms)}"

    def lines(self, readings: Sequence[Reading]) -> list[str]:
        line = self.line
        return [text for text in map(line, readings) if text is not None]
