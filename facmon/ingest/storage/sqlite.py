"""The embedded telemetry store: one SQLite file in WAL mode, a row per (device, field, ts)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

from facmon.facility.model import Reading, Scalar
from facmon.facility.telemetry import FIELDS, Kind
from facmon.ingest.errors import TelemetryStoreError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS points (
    device_id TEXT NOT NULL,
    field     TEXT NOT NULL,
    ts        INTEGER NOT NULL,
    value,
    PRIMARY KEY (device_id, field, ts)
) WITHOUT ROWID;
"""

_ALL_FIELDS = sorted({name for specs in FIELDS.values() for name in specs})
_BOOLEAN_FIELDS = {name for specs in FIELDS.values() for name, spec in specs.items() if spec.kind is Kind.BOOLEAN}


class SqliteTelemetryStore:
    """Each thread gets its own connection; SQLite's WAL lets readers run beside the one writer."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._local = threading.local()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = self._conn()
            conn.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise TelemetryStoreError(f"cannot open the telemetry store {self.path}: {exc}") from None

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=10, isolation_level=None, check_same_thread=True)
            conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode survives a process crash; only an OS crash can lose the last transactions.
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    def write(self, readings: Sequence[Reading]) -> None:
        rows = [(r.device_id, name, r.ts_ms, value) for r in readings for name, value in r.fields.items()]
        if not rows:
            return
        try:
            conn = self._conn()
            conn.execute("BEGIN")
            try:
                conn.executemany("INSERT OR REPLACE INTO points VALUES (?, ?, ?, ?)", rows)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise TelemetryStoreError(f"cannot write to {self.path}: {exc}") from None

    def latest(self, device_id: str) -> tuple[int, dict[str, Scalar]] | None:
        conn = self._conn()
        newest = 0
        fields: dict[str, Scalar] = {}
        # One index probe per known field: no scan of the device's history.
        for name in _ALL_FIELDS:
            row = conn.execute(
                "SELECT ts, value FROM points WHERE device_id = ? AND field = ? ORDER BY ts DESC LIMIT 1",
                (device_id, name),
            ).fetchone()
            if row is None:
                continue
            ts, value = row
            fields[name] = bool(value) if name in _BOOLEAN_FIELDS and value is not None else value
            newest = max(newest, ts)
        return (newest, fields) if fields else None

    def ping(self) -> None:
        try:
            self._conn().execute("SELECT 1").fetchone()
        except sqlite3.Error as exc:
            raise TelemetryStoreError(f"telemetry store {self.path} unusable: {exc}") from None

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
