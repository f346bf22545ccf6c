"""Devices' presence shared between the workers of a cluster: each writes what it hears, each reads the rest."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select

from facmon.facility.model import Scalar
from facmon.facility.state.rows import Reads, Writes
from facmon.facility.state.schema import device_presence


@dataclass(frozen=True, slots=True)
class SharedPresence:
    device_id: str
    last_seen_ms: int
    latest_ts_ms: int
    latest: dict[str, Scalar]


class PresenceReads(Reads):
    def shared_presence(self) -> list[SharedPresence]:
        """Every device's presence as last shared."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(device_presence)).all()
        return [SharedPresence(r.device_id, int(r.last_seen_ms), int(r.latest_ts_ms), dict(r.latest)) for r in rows]


class PresenceWrites(Writes):
    def share_presence(self, rows: Sequence[SharedPresence]) -> None:
        """Insert or replace each device's row, unless the stored one was heard from later (a worker that was
        paused writes what it saw before)."""
        if not rows:
            return
        statement = self._upsert(device_presence)
        excluded = statement.excluded
        self.conn.execute(
            statement.on_conflict_do_update(
                index_elements=[device_presence.c.device_id],
                set_={
                    "last_seen_ms": excluded.last_seen_ms,
                    "latest_ts_ms": excluded.latest_ts_ms,
                    "latest": excluded.latest,
                },
                where=device_presence.c.last_seen_ms < excluded.last_seen_ms,
            ),
            [
                {
                    "device_id": r.device_id,
                    "last_seen_ms": r.last_seen_ms,
                    "latest_ts_ms": r.latest_ts_ms,
                    "latest": r.latest,
                }
                for r in rows
            ],
        )
