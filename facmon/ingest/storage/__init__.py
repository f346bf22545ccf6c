"""Telemetry stores: where accepted readings go, and where the API reads history back."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from facmon.facility.config import TelemetryStorageConfig
from facmon.facility.model import Reading, Scalar


class TelemetryStore(Protocol):
    def write(self, readings: Sequence[Reading]) -> None:
        """Store a batch durably, all or nothing; a reading with the same device, field and ts is stored once."""

    def latest(self, device_id: str) -> tuple[int, dict[str, Scalar]] | None:
        """The newest ts (epoch ms) and the newest value of each field of a device, or None if it never sent."""

    def ping(self) -> None:
        """Raise TelemetryStoreError when the store cannot be used."""

    def close(self) -> None: ...


def open_telemetry_store(config: TelemetryStorageConfig) -> TelemetryStore:
    from facmon.ingest.storage.sqlite import SqliteTelemetryStore

    return SqliteTelemetryStore(config.path)
