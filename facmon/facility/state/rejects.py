"""Ingest rejects: what is kept of messages refused, its size, and the retention and size cap that prune it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Dialect, LargeBinary, delete, func, insert, select
from sqlalchemy import cast as sql_cast
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.sql import ColumnElement

from facmon.facility.errors import StateStoreError
from facmon.facility.model import Reject
from facmon.facility.state.rows import Page, Reads, Writes, error_reason
from facmon.facility.state.schema import ingest_rejects

# What a reject takes besides its text, as the rejects' size cap counts it: the row's header, id and time, and
# its entry in the index on received_at (about 75 bytes on SQLite, measured).
REJECT_ROW_BYTES = 80


# Rows deleted per transaction when pruning: ingest and the rules write to the same database, and wait for at
# most one such transaction, not for the whole pass.
PRUNE_CHUNK = 1000


def reject_size(reject: Reject) -> int:
    """What one reject counts against the rejects' size cap: topic, reason and payload in UTF-8, and its row."""
    text = len(reject.topic.encode(errors="replace")) + len(reject.reason.encode(errors="replace"))
    return text + len(reject.payload.encode(errors="replace")) + REJECT_ROW_BYTES


@dataclass(frozen=True, slots=True)
class RejectsPruned:
    """One pass of the rejects' retention and size cap: rows deleted for each, and what the rest take."""

    expired: int
    over_cap: int
    remaining_bytes: int


def _reject_size_sql(dialect: Dialect) -> ColumnElement[int]:
    """`reject_size` in SQL. PostgreSQL's octet_length reads a long text's size from its header without
    decompressing it; SQLite before 3.43 has no octet_length, and counts a text's bytes cast to a blob."""
    c = ingest_rejects.c

    def octets(column: Any) -> ColumnElement[int]:
        if dialect.name == "postgresql":
            return func.octet_length(column)
        return func.length(sql_cast(column, LargeBinary))

    return octets(c.topic) + octets(c.reason) + octets(c.payload) + REJECT_ROW_BYTES


def _rejects_total(conn: Connection) -> int:
    total = conn.execute(select(func.coalesce(func.sum(_reject_size_sql(conn.dialect)), 0))).scalar_one()
    return int(total)


class RejectReads(Reads):
    """Reads of ingest rejects."""

    def list_rejects(self, *, limit: int = 100, offset: int = 0) -> Page[tuple[int, Reject]]:
        """Rejected messages, newest first, with their ids."""
        with self.engine.connect() as conn:
            total = conn.execute(select(func.count()).select_from(ingest_rejects)).scalar_one()
            rows = conn.execute(
                select(ingest_rejects).order_by(ingest_rejects.c.id.desc()).limit(limit).offset(offset)
            ).mappings()
            return Page(
                [(row["id"], Reject(row["topic"], row["reason"], row["received_at"], row["payload"])) for row in rows],
                total,
            )

    def rejects_size(self) -> int:
        """What the stored rejects take, counted as `reject_size` counts one."""
        try:
            with self.engine.connect() as conn:
                return _rejects_total(conn)
        except SQLAlchemyError as exc:
            raise StateStoreError(f"state store unreachable: {error_reason(exc)}") from None

    def prune_rejects(self, *, max_bytes: int, older_than: datetime) -> RejectsPruned:
        """Delete the rejects received before `older_than`, then the oldest until the rest take `max_bytes` at most.

        The sum is computed afresh each time, so rejects stored by other ingest processes count too. The space
        of deleted rows is reused by the rows that come next: a SQLite file stops growing at about the cap (it
        does not shrink: VACUUM does that, by hand), PostgreSQL's autovacuum makes the space reusable.
        """
        c = ingest_rejects.c
        expired = over_cap = 0
        try:
            while True:
                oldest = select(c.id).where(c.received_at < older_than).limit(PRUNE_CHUNK)
                with self.engine.begin() as conn:
                    deleted = conn.execute(delete(ingest_rejects).where(c.id.in_(oldest))).rowcount
                expired += deleted
                if deleted < PRUNE_CHUNK:
                    break
            with self.engine.connect() as conn:
                total = _rejects_total(conn)
            while total > max_bytes:
                with self.engine.begin() as conn:
                    size = _reject_size_sql(conn.dialect)
                    rows = conn.execute(select(c.id, size).order_by(c.id).limit(PRUNE_CHUNK)).all()
                    if not rows:
                        break
                    freed = cut = 0
                    for row_id, row_size in rows:
                        freed, cut = freed + row_size, row_id
                        if total - freed <= max_bytes:
                            break
                    over_cap += conn.execute(delete(ingest_rejects).where(c.id <= cut)).rowcount
                total -= freed
        except SQLAlchemyError as exc:
            raise StateStoreError(f"cannot prune the rejects: {error_reason(exc)}") from None
        return RejectsPruned(expired, over_cap, max(total, 0))


class RejectWrites(Writes):
    """Writes of ingest rejects, in the caller's transaction."""

    def add_rejects(self, rejects: Iterable[Reject]) -> None:
        rows = [
            {"topic": r.topic, "reason": r.reason, "received_at": r.received_at, "payload": r.payload} for r in rejects
        ]
        if rows:
            self.conn.execute(insert(ingest_rejects), rows)
