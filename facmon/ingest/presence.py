"""Device presence: when each device was last heard from and its latest values, kept in memory."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from facmon.facility.model import Reading, Scalar


class Presence(StrEnum):
    ONLINE = "online"
    STALE = "stale"
    OFFLINE = "offline"


@dataclass(frozen=True, slots=True)
class DeviceSnapshot:
    last_seen_ms: int
    latest_ts_ms: int
    latest: dict[str, Scalar]


class DevicePresence:
    """Written by the ingest thread, read by the API: each device's snapshot is replaced whole, never mutated."""

    def __init__(self, stale_after: timedelta, offline_after: timedelta) -> None:
        self._stale_ms = stale_after.total_seconds() * 1000
        self._offline_ms = offline_after.total_seconds() * 1000
        self._snapshots: dict[str, DeviceSnapshot] = {}

    def restore(self, device_id: str, ts_ms: int, latest: dict[str, Scalar]) -> None:
        self._snapshots[device_id] = DeviceSnapshot(ts_ms, ts_ms, dict(latest))

    def merge(self, device_id: str, snapshot: DeviceSnapshot) -> bool:
        """Take a snapshot heard elsewhere (another worker of a cluster) if it is newer; whether it was."""
        old = self._snapshots.get(device_id)
        if old is not None and old.last_seen_ms >= snapshot.last_seen_ms:
            return False
        self._snapshots[device_id] = snapshot
        return True

    def observe(self, readings: Iterable[Reading], received_ms: int) -> None:
        for reading in readings:
            old = self._snapshots.get(reading.device_id)
            if old is None:
                self._snapshots[reading.device_id] = DeviceSnapshot(received_ms, reading.ts_ms, dict(reading.fields))
            elif reading.ts_ms >= old.latest_ts_ms:
                # A backlog flush brings old readings: they must not overwrite newer values.
                self._snapshots[reading.device_id] = DeviceSnapshot(
                    max(old.last_seen_ms, received_ms), reading.ts_ms, {**old.latest, **reading.fields}
                )
            else:
                self._snapshots[reading.device_id] = DeviceSnapshot(
                    max(old.last_seen_ms, received_ms), old.latest_ts_ms, old.latest
                )

    def get(self, device_id: str) -> DeviceSnapshot | None:
        return self._snapshots.get(device_id)

    def snapshots(self) -> list[tuple[str, DeviceSnapshot]]:
        """Every device's snapshot, as of now (a copy: ingest goes on replacing them)."""
        return list(self._snapshots.items())

    def status(self, device_id: str, now: datetime) -> Presence:
        snapshot = self._snapshots.get(device_id)
        if snapshot is None:
            return Presence.OFFLINE
        silent_ms = now.timestamp() * 1000 - snapshot.last_seen_ms
        if silent_ms <= self._stale_ms:
            return Presence.ONLINE
        if silent_ms <= self._offline_ms:
            return Presence.STALE
        return Presence.OFFLINE


class GatewayStatus(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"
    UNKNOWN = "unknown"  # registered, but no status heard since facmon started


@dataclass(frozen=True, slots=True)
class GatewaySnapshot:
    site: str
    gateway_id: str
    status: GatewayStatus
    since_ms: int | None
    registered: bool


class GatewayPresence:
    """Each gateway's last word on its status topic: `online`, or `offline` (said by it, or by its will).

    The broker retains the latest status, so a restart of facmon learns every gateway's state on subscribing.
    Gateways missing from the config are kept too, marked unregistered, so that a stray one is seen.
    """

    def __init__(self, registered: Iterable[tuple[str, str]]) -> None:
        self._snapshots = {
            (site, gw): GatewaySnapshot(site, gw, GatewayStatus.UNKNOWN, None, True) for site, gw in registered
        }
        self._registered = set(self._snapshots)

    def observe(self, site: str, gateway_id: str, payload: bytes, now_ms: int) -> GatewaySnapshot | None:
        """Record a status message; None (and nothing changed) when the payload is not `online` or `offline`."""
        text = payload.decode("utf-8", errors="replace").strip().lower()
        if text not in (GatewayStatus.ONLINE, GatewayStatus.OFFLINE):
            return None
        key = (site, gateway_id)
        old = self._snapshots.get(key)
        status = GatewayStatus(text)
        if old is not None and old.status is status:
            return old
        snapshot = GatewaySnapshot(site, gateway_id, status, now_ms, key in self._registered)
        self._snapshots[key] = snapshot
        return snapshot

    def get(self, site: str, gateway_id: str) -> GatewaySnapshot | None:
        return self._snapshots.get((site, gateway_id))

    def all(self) -> list[GatewaySnapshot]:
        return sorted(self._snapshots.values(), key=lambda g: (g.site, g.gateway_id))
