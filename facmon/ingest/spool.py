"""Store-and-forward: accepted readings wait on local disk while the telemetry store is down or slow.

A bounded queue in its own SQLite file (WAL, one transaction per batch): once a batch is in it, the batch is
durable and its messages can be acknowledged. Readings leave it oldest first, into the telemetry store, and
only once that store has taken them. When it is full, `append` refuses, and ingest stops acknowledging: the
broker keeps the messages rather than anybody dropping them.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

import orjson

from facmon.facility.model import Reading
from facmon.ingest.errors import SpoolError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    spooled   INTEGER NOT NULL,
    device_id TEXT NOT NULL,
    ts        INTEGER NOT NULL,
    seq       INTEGER,
    fields    BLOB NOT NULL
);
"""


class Spool:
    """Used by the ingest thread; `depth` and `oldest_ms` may be read from any thread."""

    def __init__(self, path: Path, max_readings: int) -> None:
        self.path = Path(path)
        self.max_readings = max_readings
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, timeout=10, isolation_level=None, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(_SCHEMA)
            count, oldest = self._conn.execute("SELECT count(*), min(spooled) FROM spool").fetchone()
        except (OSError, sqlite3.Error) as exc:
            raise SpoolError(f"cannot open the spool {self.path}: {exc}") from None
        self._depth: int = count
        self._oldest_ms: int | None = oldest

    @property
    def depth(self) -> int:
        """Readings waiting."""
        return self._depth

    @property
    def oldest_ms(self) -> int | None:
        """When the oldest waiting reading was spooled, epoch ms; None when empty."""
        return self._oldest_ms

    def append(self, readings: Sequence[Reading], now_ms: int) -> None:
        """Keep the batch, all or nothing; SpoolError when it does not fit or cannot be written."""
        if not readings:
            return
        if self._depth + len(readings) > self.max_readings:
            raise SpoolError(f"the spool {self.path} is full ({self._depth} readings waiting)")
        rows = [(now_ms, r.device_id, r.ts_ms, r.seq, orjson.dumps(r.fields)) for r in readings]
        with self._lock:
            try:
                self._conn.execute("BEGIN")
                try:
                    self._conn.executemany(
                        "INSERT INTO spool (spooled, device_id, ts, seq, fields) VALUES (?, ?, ?, ?, ?)", rows
                    )
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise SpoolError(f"cannot write to the spool {self.path}: {exc}") from None
            self._depth += len(rows)
            if self._oldest_ms is None:
                self._oldest_ms = now_ms

    def peek(self, limit: int) -> tuple[int, list[Reading]]:
        """The oldest waiting readings, and the id to pass to `remove_through` once they are stored."""
        with self._lock:
            try:
                rows = self._conn.execute(
                    "SELECT id, device_id, ts, seq, fields FROM spool ORDER BY id LIMIT ?", (limit,)
                ).fetchall()
            except sqlite3.Error as exc:
                raise SpoolError(f"cannot read the spool {self.path}: {exc}") from None
        if not rows:
            return 0, []
        return rows[-1][0], [Reading(d, ts, orjson.loads(f), seq) for _, d, ts, seq, f in rows]

    def remove_through(self, last_id: int) -> None:
        with self._lock:
            try:
                removed = self._conn.execute("DELETE FROM spool WHERE id <= ?", (last_id,)).rowcount
                oldest = self._conn.execute("SELECT min(spooled) FROM spool").fetchone()[0]
            except sqlite3.Error as exc:
                raise SpoolError(f"cannot write to the spool {self.path}: {exc}") from None
            self._depth = max(0, self._depth - removed)
            self._oldest_ms = oldest

    def close(self) -> None:
        with self._lock:
            self._conn.close()
