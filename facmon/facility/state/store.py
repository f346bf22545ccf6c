"""The state store and its transactions, composed of the readers and writers of each aggregate."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from facmon.facility.errors import StateStoreError
from facmon.facility.state.accounts import AccountReads, AccountWrites
from facmon.facility.state.alarms import AlarmReads, AlarmWrites
from facmon.facility.state.connection import connect
from facmon.facility.state.maintenance import MaintenanceReads, MaintenanceWrites
from facmon.facility.state.paging import PagingReads, PagingWrites
from facmon.facility.state.rejects import RejectReads, RejectWrites
from facmon.facility.state.rows import error_reason
from facmon.facility.state.rule_memory import RuleMemoryReads, RuleMemoryWrites
from facmon.facility.state.work_orders import WorkOrderReads, WorkOrderWrites


class StateStore(AlarmReads, RuleMemoryReads, WorkOrderReads, PagingReads, MaintenanceReads, AccountReads, RejectReads):
    """Repository over the state database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str, *, create: bool = True) -> StateStore:
        """Connect, and create or upgrade the schema to the newest revision."""
        return cls(connect(url, create=create))

    def close(self) -> None:
        self.engine.dispose()

    def ping(self) -> None:
        """Raise StateStoreError when the database does not answer."""
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            raise StateStoreError(f"state store unreachable: {error_reason(exc)}") from None

    @contextmanager
    def begin(self) -> Iterator[StateTransaction]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        with self.engine.begin() as conn:
            yield StateTransaction(conn)


class StateTransaction(
    AlarmWrites, RuleMemoryWrites, WorkOrderWrites, PagingWrites, MaintenanceWrites, AccountWrites, RejectWrites
):
    """The writes of one transaction."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
