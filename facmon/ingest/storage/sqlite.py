"""The embedded telemetry store: one SQLite file in WAL mode, a table per device type, a row per reading.

Like InfluxDB's measurement per device type, each table has a column per field of the payload contract, typed
by it (REAL for numbers, INTEGER for integers and booleans, TEXT for strings): a reading is one row, which keeps
the write path to one insert per message. A reading at the same device and ts as a stored one is merged into
it, field by field, so a resend is stored once.

Table and column names in the SQL below come from the payload contract (DeviceType, FIELDS) only, never from
a request: values are always bound parameters.
"""
# ruff: noqa: S608

from __future__ import annotations

import logging
import sqlite3
import threading
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

from facmon.facility.model import Device, DeviceType, Reading, Scalar
from facmon.facility.telemetry import FIELDS, Kind
from facmon.ingest.errors import ReadingsRefusedError, TelemetryStoreError
from facmon.ingest.storage import Aggregate, Point

log = logging.getLogger(__name__)

_SQL_TYPE = {
    Kind.NUMBER: "REAL",
    Kind.INTEGER: "INTEGER",
    Kind.BOOLEAN: "INTEGER",
    Kind.STRING: "TEXT",
    Kind.ENUM: "TEXT",
}
_COLUMNS = {t: tuple(FIELDS[t]) for t in DeviceType}
_BOOLEAN = {t: frozenset(n for n, s in FIELDS[t].items() if s.kind is Kind.BOOLEAN) for t in DeviceType}
_SQL_AGG = {Aggregate.MEAN: "avg", Aggregate.MIN: "min", Aggregate.MAX: "max", Aggregate.COUNT: "count"}


def _table_sql(device_type: DeviceType) -> str:
    columns = "".join(f",\n    {name} {_SQL_TYPE[spec.kind]}" for name, spec in FIELDS[device_type].items())
    return f"""CREATE TABLE IF NOT EXISTS {device_type} (
    device_id TEXT NOT NULL,
    ts        INTEGER NOT NULL,
    seq       INTEGER{columns},
    PRIMARY KEY (device_id, ts)
) WITHOUT ROWID;
"""


def _insert_sql(device_type: DeviceType) -> str:
    names = _COLUMNS[device_type]
    marks = ", ".join("?" * (len(names) + 3))
    merge = ", ".join(f"{n} = coalesce(excluded.{n}, {n})" for n in ("seq", *names))
    return (
        f"INSERT INTO {device_type} (device_id, ts, seq, {', '.join(names)}) VALUES ({marks}) "
        f"ON CONFLICT (device_id, ts) DO UPDATE SET {merge}"
    )


_INSERT = {t: _insert_sql(t) for t in DeviceType}


class SqliteTelemetryStore:
    """Each thread gets its own connection; SQLite's WAL lets readers run beside the one writer."""

    def __init__(self, path: Path, devices: Iterable[Device], *, retention_ms: int) -> None:
        self.path = Path(path)
        self._types = {d.id: d.type for d in devices}
        self._retention_ms = retention_ms
        self._local = threading.local()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = self._conn()
            for device_type in DeviceType:
                conn.executescript(_table_sql(device_type))
            self._adopt_row_per_field_table(conn)
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
        rows: dict[DeviceType, list[tuple[Scalar, ...]]] = defaultdict(list)
        types = self._types
        for r in readings:
            device_type = types.get(r.device_id)
            if device_type is None:
                raise ReadingsRefusedError(f"cannot write to {self.path}: device {r.device_id!r} is not registered")
            fields = r.fields
            rows[device_type].append((r.device_id, r.ts_ms, r.seq, *map(fields.get, _COLUMNS[device_type])))
        if not rows:
            return
        try:
            conn = self._conn()
            conn.execute("BEGIN")
            try:
                for device_type, batch in rows.items():
                    conn.executemany(_INSERT[device_type], batch)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except (sqlite3.IntegrityError, sqlite3.InterfaceError, sqlite3.DataError, OverflowError) as exc:
            # The database answered and refused these values (an integer past 64 bits, a type it cannot bind):
            # the same readings would fail again, so they are not a reason to spool.
            raise ReadingsRefusedError(f"{self.path} refused the readings: {type(exc).__name__}: {exc}") from None
        except sqlite3.Error as exc:
            raise TelemetryStoreError(f"cannot write to {self.path}: {exc}") from None

    def latest(self, device_id: str) -> tuple[int, dict[str, Scalar]] | None:
        device_type = self._types.get(device_id)
        if device_type is None:
            return None
        conn = self._conn()
        newest = 0
        fields: dict[str, Scalar] = {}
        for name in _COLUMNS[device_type]:
            try:
                row = conn.execute(
                    f"SELECT ts, {name} FROM {device_type} WHERE device_id = ? AND {name} IS NOT NULL "
                    "ORDER BY ts DESC LIMIT 1",
                    (device_id,),
                ).fetchone()
            except sqlite3.Error as exc:
                raise TelemetryStoreError(f"cannot read {self.path}: {exc}") from None
            if row is None:
                continue
            ts, value = row
            fields[name] = _typed(device_type, name, value)
            newest = max(newest, ts)
        return (newest, fields) if fields else None

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
        device_type = self._types.get(device_id)
        if device_type is None or field not in _COLUMNS[device_type]:
            return []  # names from the contract only: `field` is never put into SQL unchecked
        where = f"FROM {device_type} WHERE device_id = ? AND ts >= ? AND ts < ? AND {field} IS NOT NULL"
        params: tuple[object, ...] = (device_id, start_ms, stop_ms)
        if every_ms is None:
            sql = f"SELECT ts, {field} {where} ORDER BY ts"
        elif agg is Aggregate.LAST:
            # SQLite takes the bare column from the row that gave max(ts).
            sql = f"SELECT ts - ts % {int(every_ms)} AS w, {field}, max(ts) {where} GROUP BY w ORDER BY w"
        else:
            sql = f"SELECT ts - ts % {int(every_ms)} AS w, {_SQL_AGG[agg]}({field}) {where} GROUP BY w ORDER BY w"
        try:
            rows = self._conn().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise TelemetryStoreError(f"cannot read {self.path}: {exc}") from None
        if every_ms is not None and agg in (Aggregate.MEAN, Aggregate.COUNT):
            return [Point(ts, value) for ts, value, *_ in rows]
        return [Point(ts, _typed(device_type, field, value)) for ts, value, *_ in rows]

    def apply_retention(self, now_ms: int) -> int:
        cutoff = now_ms - self._retention_ms
        deleted = 0
        try:
            conn = self._conn()
            for device_type in DeviceType:
                devices = [row[0] for row in conn.execute(f"SELECT DISTINCT device_id FROM {device_type}")]
                for device_id in devices:
                    # Per device, along the primary key: no index on ts alone to slow every write.
                    cursor = conn.execute(
                        f"DELETE FROM {device_type} WHERE device_id = ? AND ts < ?", (device_id, cutoff)
                    )
                    deleted += cursor.rowcount
        except sqlite3.Error as exc:
            raise TelemetryStoreError(f"cannot apply retention to {self.path}: {exc}") from None
        return deleted

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

    def _adopt_row_per_field_table(self, conn: sqlite3.Connection) -> None:
        """Earlier versions kept a row per (device, field, ts) in `points`: move it into the typed tables."""
        if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'points'").fetchone() is None:
            return
        log.info("moving telemetry in %s into a table per device type", self.path)
        conn.execute("BEGIN")
        try:
            for device_type in DeviceType:
                ids = [device_id for device_id, t in self._types.items() if t is device_type]
                if not ids:
                    continue
                marks = ", ".join("?" * len(ids))
                conn.execute(
                    f"INSERT OR IGNORE INTO {device_type} (device_id, ts) "
                    f"SELECT DISTINCT device_id, ts FROM points WHERE device_id IN ({marks})",
                    ids,
                )
                for name in _COLUMNS[device_type]:
                    conn.execute(
                        f"UPDATE {device_type} SET {name} = (SELECT p.value FROM points p WHERE p.device_id = "
                        f"{device_type}.device_id AND p.field = ? AND p.ts = {device_type}.ts)",
                        (name,),
                    )
            conn.execute("ALTER TABLE points RENAME TO points_before_typed_tables")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


def _typed(device_type: DeviceType, field: str, value: Scalar) -> Scalar:
    if value is not None and field in _BOOLEAN[device_type]:
        return bool(value)
    return value
