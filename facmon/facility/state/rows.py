"""Rows and domain records: a row read as its dataclass, a dataclass written as a row, one reader by id, pages."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from enum import Enum
from typing import Any, Generic, TypeVar, cast, get_args, get_type_hints

from sqlalchemy import Engine, Table, insert, select
from sqlalchemy.dialects.postgresql import Insert as PgInsert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import Insert as SqliteInsert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from facmon.facility.errors import NotFoundError
from facmon.facility.model import Alarm, WorkOrder

T = TypeVar("T")


D = TypeVar("D")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    total: int


def error_reason(exc: BaseException) -> str:
    text_ = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return text_[0] if text_ else type(exc).__name__


def prefixed(row: Any, prefix: str) -> dict[str, Any]:
    """The columns of one table out of a joined row labelled `table_column`."""
    return {key[len(prefix) :]: value for key, value in row.items() if key.startswith(prefix)}


def without_id(values: Mapping[str, Any]) -> dict[str, Any]:
    """Column values without `id`, which the database gives (insert) or which does not change (update)."""
    return {name: value for name, value in values.items() if name != "id"}


def row_values(obj: Any) -> dict[str, Any]:
    """A domain dataclass as column values: its fields are named as the table's columns."""
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


def alarm_row(alarm: Alarm) -> dict[str, Any]:
    return {**row_values(alarm), "updated_at": alarm.updated_at or alarm.raised_at}


def work_order_row(order: WorkOrder) -> dict[str, Any]:
    return {**row_values(order), "updated_at": order.updated_at or order.created_at}


_ENUM_FIELDS: dict[type, dict[str, type[Enum]]] = {}


def _enum_of(hint: Any) -> type[Enum] | None:
    """The enum of a field typed `E` or `E | None`."""
    for candidate in (hint, *get_args(hint)):
        if isinstance(candidate, type) and issubclass(candidate, Enum):
            return candidate
    return None


def from_row(cls: type[D], row: Any) -> D:
    """A row as the domain dataclass, its enum-typed fields turned back into their enums (None stays None)."""
    enums = _ENUM_FIELDS.get(cls)
    if enums is None:
        hints = get_type_hints(cls)
        enums = {name: enum for name, hint in hints.items() if (enum := _enum_of(hint)) is not None}
        _ENUM_FIELDS[cls] = enums
    names = [f.name for f in fields(cast(Any, cls))]
    return cls(
        **{name: enums[name](row[name]) if name in enums and row[name] is not None else row[name] for name in names}
    )


def read_one(conn: Connection, table: Table, cls: type[D], key: int, what: str, *, lock: bool = False) -> D:
    """The row of `table` with id `key` as `cls`, raising NotFoundError for `what`; with `lock`, its row locked
    until the transaction ends (PostgreSQL), so changes to it queue up."""
    query = select(table).where(table.c.id == key)
    if lock:
        query = query.with_for_update()
    row = conn.execute(query).mappings().first()
    if row is None:
        raise NotFoundError(what, key)
    return from_row(cls, row)


class Reads:
    """The base of the state store's readers: each read takes a connection of its own from the engine."""

    engine: Engine


class Writes:
    """The base of a transaction's writers: every write goes through the transaction's connection."""

    conn: Connection

    def _insert(self, table: Table, values: Mapping[str, Any]) -> int:
        """Insert a row of a domain object's values, the database giving its id; the id given."""
        new_id: int = self.conn.execute(insert(table).values(without_id(values)).returning(table.c.id)).scalar_one()
        return new_id

    def _upsert(self, table: Table) -> PgInsert | SqliteInsert:
        """The database's own INSERT into `table`, which takes ON CONFLICT (PostgreSQL and SQLite alike)."""
        return pg_insert(table) if self.conn.dialect.name == "postgresql" else sqlite_insert(table)
