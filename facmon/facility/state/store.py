"""The state store and its transactions, composed of the readers and writers of each aggregate."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from sqlalchemy import Engine, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from facmon.facility.errors import StateStoreError
from facmon.facility.state.accounts import AccountReads, AccountWrites
from facmon.facility.state.alarms import AlarmReads, AlarmWrites
from facmon.facility.state.connection import connect
from facmon.facility.state.leases import LeaseReads, LeaseWrites
from facmon.facility.state.maintenance import MaintenanceReads, MaintenanceWrites
from facmon.facility.state.paging import PagingReads, PagingWrites
from facmon.facility.state.presence import PresenceReads, PresenceWrites
from facmon.facility.state.rejects import RejectReads, RejectWrites
from facmon.facility.state.rows import error_reason
from facmon.facility.state.rule_memory import RuleMemoryReads, RuleMemoryWrites
from facmon.facility.state.work_orders import WorkOrderReads, WorkOrderWrites

# What the writes of this thread or task act for: a callable giving (lease, owner, epoch) of the lease held now,
# or raising FencedError when none is. Unset (the API, operators' actions) writes are not fenced.
Fence = Callable[[], tuple[str, str, int]]
_fence: ContextVar[Fence | None] = ContextVar("facmon_state_fence", default=None)


@contextmanager
def fenced(fence: Fence | None) -> Iterator[None]:
    """Within the block, every transaction of this thread (or task) is fenced by `fence`; None fences nothing."""
    token = _fence.set(fence)
    try:
        yield
    finally:
        _fence.reset(token)


class StateStore(
    AlarmReads,
    RuleMemoryReads,
    WorkOrderReads,
    PagingReads,
    MaintenanceReads,
    AccountReads,
    RejectReads,
    LeaseReads,
    PresenceReads,
):
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
        """One transaction: committed when the block ends, rolled back if it raises.

        Within `fenced`, the transaction first checks the lease it acts for (FencedError if it is lost).
        """
        with self.engine.begin() as conn:
            tx = StateTransaction(conn)
            fence = _fence.get()
            if fence is not None:
                tx.fence(*fence())
            yield tx


class StateTransaction(
    AlarmWrites,
    RuleMemoryWrites,
    WorkOrderWrites,
    PagingWrites,
    MaintenanceWrites,
    AccountWrites,
    RejectWrites,
    LeaseWrites,
    PresenceWrites,
):
    """The writes of one transaction."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
