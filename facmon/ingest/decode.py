"""Decoding and validation of telemetry payloads against the contract in `facmon.facility.telemetry`.

Hand-written checks over orjson's output rather than a pydantic model per message: this is the hot path, and
each message is small. A payload is one JSON object or an array of them (a gateway flushing its backlog); each
element is judged on its own, so one bad element does not cost the good ones.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import NamedTuple

import orjson

from facmon.config.registry import DeviceRegistry
from facmon.facility.clock import epoch_ms
from facmon.facility.model import Device, DeviceType, Reading, Reject, Scalar
from facmon.facility.telemetry import DEFAULT_NOMINAL, FIELDS, REQUIRED_ANY, FieldSpec, Kind
from facmon.facility.topics import parse_telemetry_topic, telemetry_topic
from facmon.ingest.errors import PayloadError

log = logging.getLogger(__name__)

MAX_REJECT_PAYLOAD = 64 * 1024
MAX_STRING = 256
# Integers every store holds as integers: SQLite's INTEGER, InfluxDB's `i` fields and PostgreSQL's bigint are
# signed 64-bit. A larger one (orjson reads up to 2**64 - 1) would be refused by the store, or worse, raise
# where a store error is expected and hold back every reading behind it.
MIN_INT64 = -(2**63)
MAX_INT64 = 2**63 - 1
# One array of a gateway's backlog rejects at most this many elements one by one; the rest are one reject.
MAX_ELEMENT_REJECTS = 20
# Readings stamped before this are from a gateway whose clock was never set (1970) rather than from the past.
EARLIEST_TS_MS = 946_684_800_000  # 2000-01-01T00:00:00Z


class Decoded(NamedTuple):
    # A named tuple: one is made per message.
    readings: list[Reading]
    rejects: list[Reject]


class Decoder:
    """Turns (topic, payload) into readings and rejects."""

    def __init__(
        self,
        registry: DeviceRegistry,
        *,
        topic_prefix: str,
        max_payload_bytes: int,
        max_future_skew_ms: int,
    ) -> None:
        self._registry = registry
        self._prefix = topic_prefix
        self._max_payload = max_payload_bytes
        self._max_skew_ms = max_future_skew_ms
        self._bounds = {d.id: _bounds_for(d) for d in registry}
        self._required = {t: tuple(n for n, spec in FIELDS[t].items() if spec.required) for t in DeviceType}
        self._ignored_fields: set[tuple[DeviceType, str]] = set()
        # Topic → device, for topics that named a registered device of the right type and site: one dict lookup
        # per message instead of splitting and checking the topic. Bounded by the registry's size.
        self._devices_by_topic: dict[str, Device] = {}

    def decode(self, topic: str, payload: bytes, received_ms: int) -> Decoded:
        try:
            device = self._device_for(topic)
            objects = self._parse(payload)
        except PayloadError as exc:
            return Decoded([], [_reject(topic, str(exc), received_ms, payload)])
        readings: list[Reading] = []
        rejects: list[Reject] = []
        if not isinstance(objects, list):
            try:
                readings.append(self._reading(device, objects, received_ms))
            except PayloadError as exc:
                rejects.append(_reject(topic, str(exc), received_ms, payload))
            return Decoded(readings, rejects)
        more: list[int] = []
        for index, item in enumerate(objects):
            try:
                readings.append(self._reading(device, item, received_ms))
            except PayloadError as exc:
                if len(rejects) < MAX_ELEMENT_REJECTS:
                    rejects.append(_reject(topic, f"[{index}] {exc}", received_ms, orjson.dumps(item)))
                else:
                    more.append(index)
        if more:
            # A broken gateway's array of 100,000 bad elements is one reject more, not 100,000 rows.
            reason = (
                f"[{more[0]}..{more[-1]}] {len(more)} more elements rejected, not kept one by one "
                f"(limit {MAX_ELEMENT_REJECTS} a message)"
            )
            rejects.append(_reject(topic, reason, received_ms, payload))
        return Decoded(readings, rejects)

    def reject_reading(self, reading: Reading, reason: str) -> Reject:
        """A decoded reading turned into a reject (a store refused it), kept as its device would have sent it."""
        device = self._registry.get(reading.device_id)
        topic = (
            telemetry_topic(self._prefix, device.site, device.type, device.id)
            if device is not None
            else reading.device_id
        )
        item: dict[str, object] = {"ts": reading.ts_ms, **reading.fields}
        if reading.seq is not None:
            item["seq"] = reading.seq
        # The standard library's encoder, not orjson: this is rare, and it writes integers past 64 bits too.
        payload = json.dumps(item, default=str, ensure_ascii=False).encode()
        return _reject(topic, reason, epoch_ms(datetime.now(UTC)), payload)

    def _device_for(self, topic: str) -> Device:
        device = self._devices_by_topic.get(topic)
        if device is None:
            device = self._devices_by_topic[topic] = self._check_topic(topic)
        return device

    def _check_topic(self, topic: str) -> Device:
        parts = parse_telemetry_topic(topic, self._prefix)
        if parts is None:
            raise PayloadError(f"not a telemetry topic: expected {self._prefix}/SITE/TYPE/DEVICE/telemetry")
        device = self._registry.get(parts.device_id)
        if device is None:
            raise PayloadError(f"unknown device {parts.device_id!r}")
        if parts.device_type != device.type:
            raise PayloadError(f"device {device.id!r} is a {device.type}, the topic says {parts.device_type!r}")
        if parts.site != device.site:
            raise PayloadError(f"device {device.id!r} belongs to site {device.site!r}, the topic says {parts.site!r}")
        return device

    def _parse(self, payload: bytes) -> object:
        if len(payload) > self._max_payload:
            raise PayloadError(f"payload of {len(payload)} bytes is over the limit of {self._max_payload}")
        try:
            objects = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            try:
                payload.decode("utf-8")
            except UnicodeDecodeError:
                raise PayloadError("payload is not valid UTF-8") from None
            raise PayloadError(f"payload is not valid JSON: {exc}") from None
        if isinstance(objects, list):
            if not objects:
                raise PayloadError("payload is an empty array")
        elif not isinstance(objects, dict):
            raise PayloadError("payload must be a JSON object or an array of objects")
        return objects

    def _reading(self, device: Device, item: object, received_ms: int) -> Reading:
        if not isinstance(item, dict):
            raise PayloadError("expected a JSON object")
        specs = FIELDS[device.type]
        bounds = self._bounds[device.id]
        fields: dict[str, Scalar] = {}
        ts_ms = received_ms
        seq: int | None = None
        for key, value in item.items():
            spec = specs.get(key)
            if spec is not None:
                fields[key] = _check(spec, value, bounds.get(key))
            elif key == "ts":
                ts_ms = _timestamp(value)
            elif key == "seq":
                if type(value) is not int or not 0 <= value <= MAX_INT64:
                    raise PayloadError(f"seq must be a non-negative integer of at most {MAX_INT64}")
                seq = value
            else:
                self._note_ignored(device.type, key)
        for name in self._required[device.type]:
            if name not in fields:
                raise PayloadError(f"required field {name!r} is missing")
        group = REQUIRED_ANY.get(device.type)
        if group and not any(name in fields for name in group):
            raise PayloadError(f"at least one of {', '.join(group)} is required")
        if ts_ms > received_ms + self._max_skew_ms:
            ahead = (ts_ms - received_ms) / 1000
            raise PayloadError(f"ts is {ahead:.0f} s in the future (limit {self._max_skew_ms / 1000:.0f} s)")
        if ts_ms < EARLIEST_TS_MS:
            raise PayloadError("ts is before 2000-01-01: is the gateway's clock set?")
        return Reading(device.id, ts_ms, fields, seq)

    def _note_ignored(self, device_type: DeviceType, key: str) -> None:
        # Firmware gains fields before facmon knows them: keep the reading, say so once per field.
        if (device_type, key) not in self._ignored_fields:
            self._ignored_fields.add((device_type, key))
            log.warning("ignoring field %r of %s telemetry: not in the contract", key, device_type)


def _bounds_for(device: Device) -> dict[str, float]:
    """Upper bounds that depend on the device's nominal values (voltage: twice nominal)."""
    out: dict[str, float] = {}
    for spec in FIELDS[device.type].values():
        if spec.max_times_nominal is not None and spec.nominal_key is not None:
            nominal = device.nominal.get(spec.nominal_key, DEFAULT_NOMINAL.get(spec.nominal_key))
            if nominal is not None:
                out[spec.name] = spec.max_times_nominal * nominal
    return out


def _check(spec: FieldSpec, value: object, bound: float | None) -> Scalar:
    kind = spec.kind
    if value is None:
        if spec.nullable:
            return None
        raise PayloadError(f"{spec.name} must not be null")
    if kind is Kind.NUMBER or kind is Kind.INTEGER:
        if type(value) is float:
            # orjson has already refused NaN, Infinity and overflowing literals such as 1e400.
            if kind is Kind.INTEGER:
                if not value.is_integer():
                    raise PayloadError(f"{spec.name} must be an integer, got {value!r}")
                value = int(value)
        elif type(value) is not int:
            raise PayloadError(f"{spec.name} must be a number, got {_json_type(value)}")
        if type(value) is int and not MIN_INT64 <= value <= MAX_INT64:
            raise PayloadError(f"{spec.name} {value!r} is outside the 64-bit integer range the stores hold")
        number: float = value
        if spec.minimum is not None and number < spec.minimum:
            raise PayloadError(f"{spec.name} {number!r} is below the plausible minimum {spec.minimum:g}")
        maximum = bound if bound is not None else spec.maximum
        if maximum is not None and number > maximum:
            raise PayloadError(f"{spec.name} {number!r} is above the plausible maximum {maximum:g}")
        return value
    if kind is Kind.BOOLEAN:
        if type(value) is not bool:
            raise PayloadError(f"{spec.name} must be true or false, got {_json_type(value)}")
        return value
    if type(value) is not str:
        raise PayloadError(f"{spec.name} must be a string, got {_json_type(value)}")
    if kind is Kind.ENUM and value not in spec.choices:
        raise PayloadError(f"{spec.name} {value[:40]!r} is not one of {', '.join(spec.choices)}")
    if len(value) > MAX_STRING:
        raise PayloadError(f"{spec.name} is longer than {MAX_STRING} characters")
    if not value.isprintable():
        # NUL cannot be stored in PostgreSQL text; line breaks and other controls break logs and tag values.
        raise PayloadError(f"{spec.name} {value[:40]!r} holds control characters")
    return value


def _timestamp(value: object) -> int:
    if type(value) is int:
        if not MIN_INT64 <= value <= MAX_INT64:
            raise PayloadError("ts is outside the 64-bit integer range of epoch milliseconds")
        return value
    if type(value) is str:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise PayloadError(f"ts {value[:40]!r} is not an RFC 3339 time") from None
        if parsed.tzinfo is None:
            raise PayloadError(f"ts {value[:40]!r} has no UTC offset")
        return int(parsed.timestamp() * 1000)
    raise PayloadError("ts must be an RFC 3339 string or integer epoch milliseconds")


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _reject(topic: str, reason: str, received_ms: int, payload: bytes) -> Reject:
    # NUL cannot be kept in PostgreSQL text: it is shown as U+FFFD, like undecodable bytes.
    text = payload[:MAX_REJECT_PAYLOAD].decode("utf-8", errors="replace").replace("\x00", "\ufffd")
    return Reject(topic, reason, datetime.fromtimestamp(received_ms / 1000, UTC), text)
