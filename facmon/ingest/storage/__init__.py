"""Telemetry stores: where accepted readings go, and where the API reads history back.

Every backend keeps the same promises, checked by one contract test suite that runs on each of them:

- `write` stores a batch durably, all or nothing, and a reading with the same device, field and ts is stored
  once (a resend overwrites it with the same values);
- numbers are kept as numbers, integers as integers, booleans as booleans, strings as strings;
- `query` returns a field's history in time order, raw or aggregated over windows of `every` aligned to the
  epoch (a window is named by its start; empty windows are left out);
- times are epoch milliseconds throughout.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from facmon.config.registry import DeviceRegistry
from facmon.config.storage import TelemetryStorageConfig
from facmon.facility.model import DeviceType, Reading, Scalar
from facmon.facility.telemetry import FIELDS, Kind


class Aggregate(StrEnum):
    MEAN = "mean"
    MIN = "min"
    MAX = "max"
    LAST = "last"
    COUNT = "count"


NUMERIC_ONLY = frozenset({Aggregate.MEAN, Aggregate.MIN, Aggregate.MAX})


@dataclass(frozen=True, slots=True)
class Point:
    ts_ms: int
    value: Scalar


class TelemetryStore(Protocol):
    def write(self, readings: Sequence[Reading]) -> None:
        """Store a batch durably, all or nothing; raise TelemetryStoreError when it is not stored."""

    def latest(self, device_id: str) -> tuple[int, dict[str, Scalar]] | None:
        """The newest ts and the newest value of each field of a device, or None if it never sent."""

    def query(
        self,
        device_id: str,
        field: str,
        start_ms: int,
        stop_ms: int,
        *,
        every_ms: int | None = None,
        agg: Aggregate = Aggregate.MEAN,
    ) -> list[Point]:
        """A field's readings with start <= ts < stop, in time order; with `every_ms`, one point per window.

        Callers check the query with `check_query` first; `count` answers integers, `mean` floats.
        """

    def apply_retention(self, now_ms: int) -> int:
        """Delete what is older than the configured retention; the number of readings deleted, or 0 where the
        server applies retention itself (InfluxDB buckets and retention policies)."""

    def ping(self) -> None:
        """Raise TelemetryStoreError when the store cannot be used."""

    def close(self) -> None: ...


def field_kind(device_type: DeviceType, field: str) -> Kind | None:
    spec = FIELDS[device_type].get(field)
    return spec.kind if spec is not None else None


def check_query(
    device_type: DeviceType, field: str, start_ms: int, stop_ms: int, every_ms: int | None, agg: Aggregate
) -> None:
    """Raise ValueError, worded for the caller, when a history query cannot be answered."""
    kind = field_kind(device_type, field)
    if kind is None:
        known = ", ".join(FIELDS[device_type])
        raise ValueError(f"{device_type} devices have no field {field!r}; they have {known}")
    if stop_ms <= start_ms:
        raise ValueError("stop must be after start")
    if every_ms is not None:
        if every_ms < 1000:
            raise ValueError("every must be at least 1s")
        if agg in NUMERIC_ONLY and kind not in (Kind.NUMBER, Kind.INTEGER):
            raise ValueError(f"{agg} needs a numeric field; {field} is a {kind}: use last or count")


def open_telemetry_store(config: TelemetryStorageConfig, registry: DeviceRegistry) -> TelemetryStore:
    if config.backend == "influxdb":
        from facmon.ingest.storage.influx import open_influx_store

        return open_influx_store(config, registry)
    from facmon.ingest.storage.sqlite import SqliteTelemetryStore

    return SqliteTelemetryStore(config.path, registry, retention_ms=int(config.retention.total_seconds() * 1000))
