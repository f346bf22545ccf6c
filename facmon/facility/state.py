"""The state store: alarms, their audit trail, work orders, their history, the notification outbox, and ingest rejects.

SQLAlchemy 2 Core over a SQLite file (default) or PostgreSQL. Reads are methods of `StateStore`; writes go
through a `StateTransaction` so that a caller groups the rows of one change (an alarm and its event, a work
order and its first history line) into one commit.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any, Generic, TypeVar, cast, get_args, get_type_hints

from alembic import command as alembic_command
from alembic.config import Config as AlembicConfig
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    and_,
    case,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, ExceptionContext, make_url
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.sql import LABEL_STYLE_TABLENAME_PLUS_COL, ColumnElement, Select

from facmon.facility.errors import NotFoundError, StateStoreError
from facmon.facility.model import (
    Alarm,
    AlarmEvent,
    AlarmState,
    ApiToken,
    Category,
    Escalation,
    EscalationState,
    MaintenanceOccurrence,
    NotificationState,
    Priority,
    QueuedNotification,
    Reject,
    Severity,
    User,
    WorkOrder,
    WorkOrderEvent,
    WorkOrderSource,
    WorkOrderStatus,
)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on SQLite (which keeps no offset) as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the state store")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData()

alarms = Table(
    "alarms",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("rule", String(64), nullable=False),
    Column("device_id", String(64), nullable=False),
    Column("site", String(64), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("state", String(24), nullable=False),
    Column("shelved", Boolean, nullable=False, default=False),
    Column("suppressed", Boolean, nullable=False, default=False),
    Column("raised_at", UTCDateTime, nullable=False),
    Column("acked_at", UTCDateTime),
    Column("acked_by", String(64)),
    Column("returned_at", UTCDateTime),
    Column("cleared_at", UTCDateTime),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("value", JSON),
    Column("message", Text, nullable=False),
    Column("latched", Boolean, nullable=False, default=False),
    Column("shelved_until", UTCDateTime),
    Column("shelved_by", String(64)),
    Column("shelve_reason", Text),
    Index("ix_alarms_state", "state"),
    Index("ix_alarms_rule_device", "rule", "device_id"),
)

alarm_events = Table(
    "alarm_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("alarm_id", Integer, ForeignKey("alarms.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("at", UTCDateTime, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("state", String(24), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("actor", String(64), nullable=False),
    Column("value", JSON),
    Column("note", Text),
)

work_orders = Table(
    "work_orders",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("number", String(24), nullable=False, unique=True),
    Column("title", Text, nullable=False),
    Column("description", Text),
    Column("device_id", String(64)),
    Column("site", String(64)),
    Column("location", Text),
    Column("category", String(16), nullable=False),
    Column("priority", String(2), nullable=False),
    Column("status", String(16), nullable=False),
    Column("source", String(16), nullable=False),
    Column("alarm_id", Integer, ForeignKey("alarms.id", ondelete="SET NULL"), index=True),
    Column("team", String(64)),
    Column("assignee", String(64)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("due_at", UTCDateTime),
    Column("first_response_at", UTCDateTime),
    Column("resolved_at", UTCDateTime),
    Column("closed_at", UTCDateTime),
    Index("ix_work_orders_status", "status"),
)

work_order_events = Table(
    "work_order_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("work_order_id", Integer, ForeignKey("work_orders.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("at", UTCDateTime, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("actor", String(64), nullable=False),
    Column("note", Text),
    Column("from_status", String(16)),
    Column("assignee", String(64)),
)

# Work order numbers are WO-YYYYMMDD-NNNN: the last NNNN handed out per day.
work_order_counters = Table(
    "work_order_counters",
    metadata,
    Column("day", String(8), primary_key=True),
    Column("last", Integer, nullable=False),
)

ingest_rejects = Table(
    "ingest_rejects",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("topic", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("received_at", UTCDateTime, nullable=False, index=True),
    Column("payload", Text, nullable=False),
)

# The rule engine's memory of each (rule, device): pending on- and off-delays, so a restart keeps its timers.
rule_state = Table(
    "rule_state",
    metadata,
    Column("rule", String(64), primary_key=True),
    Column("device_id", String(64), primary_key=True),
    Column("state", JSON, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

# Alarm floods (ISA-18.2: more than 10 alarms in 10 minutes on a site), open while ended_at is null.
alarm_floods = Table(
    "alarm_floods",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("site", String(64), nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("ended_at", UTCDateTime),
    Column("peak", Integer, nullable=False),
    Index("ix_alarm_floods_site_started", "site", "started_at"),
)

# Devices taken out of service for maintenance: their alarms are not annunciated meanwhile.
device_service = Table(
    "device_service",
    metadata,
    Column("device_id", String(64), primary_key=True),
    Column("since", UTCDateTime, nullable=False),
    Column("until", UTCDateTime),
    Column("by", String(64), nullable=False),
    Column("reason", Text, nullable=False),
)

# The notification outbox: a row is queued in the transaction that causes it and delivered by the outbox
# (facmon.alerts.notifications.outbox). One row per (channel, kind, ref), so the same page is never queued twice.
notifications = Table(
    "notifications",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("channel", String(64), nullable=False),
    Column("kind", String(32), nullable=False),
    # What it is about, e.g. the work order number; a page's ref also names the paging and the person.
    Column("ref", String(160), nullable=False),
    Column("language", String(8), nullable=False),
    Column("subject", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("state", String(8), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime),
    Column("last_error", Text),
    Column("recipient", String(64)),
    Column("address", String(256)),
    UniqueConstraint("channel", "kind", "ref", name="uq_notifications_channel_kind_ref"),
    Index("ix_notifications_state_next_attempt", "state", "next_attempt_at"),
)

# The paging of work orders along escalation policies (facmon.alerts.paging.escalation): one row per work order.
escalations = Table(
    "escalations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("work_order_id", Integer, ForeignKey("work_orders.id", ondelete="CASCADE"), nullable=False, unique=True),
    Column("policy", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("step", Integer, nullable=False),
    Column("round", Integer, nullable=False),
    Column("pages", Integer, nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("next_at", UTCDateTime),
    Column("acked_at", UTCDateTime),
    Column("acked_by", String(64)),
    Column("ended_at", UTCDateTime),
    Column("end_reason", String(64)),
    Index("ix_escalations_state_next", "state", "next_at"),
)

# Each due date (or meter mark) of a maintenance plan for a device, recorded once: the key makes opening its work
# order happen once, whatever restarts or other service instances do.
maintenance_occurrences = Table(
    "maintenance_occurrences",
    metadata,
    Column("plan", String(64), primary_key=True),
    Column("device_id", String(64), primary_key=True),
    Column("due_key", String(32), primary_key=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("due_at", UTCDateTime),
    Column("meter_value", Float),
    Column("work_order_id", Integer, ForeignKey("work_orders.id", ondelete="SET NULL")),
)

# People who sign in to the dashboard and API, with their role; passwords only as argon2id hashes.
users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("username", String(64), nullable=False, unique=True),
    Column("name", String(128), nullable=False),
    Column("role", String(16), nullable=False),
    Column("password_hash", String(256), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("failed_logins", Integer, nullable=False, default=0),
    Column("locked_until", UTCDateTime),
)

# Bearer tokens: sessions from sign-in and machine tokens; only the SHA-256 of each token is kept.
api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("kind", String(16), nullable=False),
    Column("name", String(64), nullable=False),
    Column("role", String(16), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), index=True),
    Column("expires_at", UTCDateTime),
    Column("last_used_at", UTCDateTime),
    Column("revoked_at", UTCDateTime),
)

# Meters facmon keeps itself (a pump's running hours from `pump_running`): the value, counted up to `until_ms`.
meters = Table(
    "meters",
    metadata,
    Column("device_id", String(64), primary_key=True),
    Column("meter", String(32), primary_key=True),
    Column("value", Float, nullable=False),
    Column("until_ms", BigInteger, nullable=False),
)

# Alarm changes committed whose consequences (a work order opened, pages queued, a note on the work order) are
# not committed yet. Written in the alarm change's own transaction and deleted in the transaction of its
# consequences, so a crash or a store outage between the two leaves a row here, and the change is followed up
# once, after a restart or when the store is back.
alarm_followups = Table(
    "alarm_followups",
    metadata,
    Column("event_id", Integer, ForeignKey("alarm_events.id", ondelete="CASCADE"), primary_key=True),
    Column("created_at", UTCDateTime, nullable=False, index=True),
)

LAST_ERROR_MAX = 1000

ACTIVE_STATES = (AlarmState.ACTIVE_UNACKED, AlarmState.ACTIVE_ACKED, AlarmState.RETURNED_UNACKED)


T = TypeVar("T")
D = TypeVar("D")


@dataclass(frozen=True, slots=True)
class ServiceRecord:
    """A device taken out of service: by whom, why, since when and, if known, until when."""

    device_id: str
    since: datetime
    by: str
    reason: str
    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    total: int


# -- ingest rejects

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


# -- alarm-system health


@dataclass(frozen=True, slots=True)
class AlarmTransition:
    """An alarm event with the site, rule and device of its alarm: the raw material of the alarm KPIs."""

    id: int
    alarm_id: int
    site: str
    rule: str
    device_id: str
    kind: str
    severity: Severity
    at: datetime


@dataclass(frozen=True, slots=True)
class AlarmFlood:
    """A period of more alarms than operators can handle on one site; open while `ended_at` is None."""

    id: int
    site: str
    started_at: datetime
    ended_at: datetime | None
    peak: int


@dataclass(frozen=True, slots=True)
class AlarmCount:
    """How many alarms a rule raised on a device at one severity: the raw material of the monthly report."""

    device_id: str
    site: str
    rule: str
    severity: Severity
    count: int


def normalise_url(url: str) -> str:
    """Use psycopg 3 for PostgreSQL URLs that name no driver."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision; a database made before revisions were kept is adopted as 0001."""
    config = AlembicConfig()
    config.set_main_option("script_location", "facmon.facility:migrations")
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        tables = inspect(conn).get_table_names()
        if "alarms" in tables and "alembic_version" not in tables:
            alembic_command.stamp(config, "0001")
        alembic_command.upgrade(config, "head")


# How long a statement waits for a SQLite database that another connection is writing to. Ingest and the rules
# wait long, as their writes may queue behind a burst of others; a caller someone is waiting on (an API request)
# gives up sooner, with `lock_wait`.
LOCK_WAIT_S = 10.0
_LOCK_WAIT_MS = int(LOCK_WAIT_S * 1000)
_lock_wait_s: ContextVar[float] = ContextVar("facmon_state_lock_wait_s", default=LOCK_WAIT_S)


def _sqlite_pragmas(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the API read while ingest writes; foreign keys are off by default in SQLite.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={_LOCK_WAIT_MS}")
    cursor.close()


@contextmanager
def lock_wait(seconds: float) -> Iterator[None]:
    """Within the block, and in the threads it hands its context to, wait at most `seconds` for a locked SQLite
    database before a statement fails (as StateStoreError)."""
    token = _lock_wait_s.set(seconds)
    try:
        yield
    finally:
        _lock_wait_s.reset(token)


def _sqlite_lock_wait(dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
    """Give a pooled connection, as it is checked out, the busy timeout of the caller's context."""
    wanted = int(_lock_wait_s.get() * 1000)
    if record.info.get("busy_timeout_ms", _LOCK_WAIT_MS) != wanted:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={wanted}")
        cursor.close()
        record.info["busy_timeout_ms"] = wanted


# SQLite's primary code for an error in the statement itself (no such table, a syntax error): a bug, not an outage.
_SQLITE_ERROR = 1


def _unavailable(context: ExceptionContext) -> None:
    """Turn a database that cannot be reached, or is locked or failing, into StateStoreError, so that every caller
    (API, ingest, rules, alerts) meets the domain error. Constraint violations and mistakes in a statement stay
    SQLAlchemy's errors: retrying would not help them."""
    if context.is_pre_ping:
        return  # the pool replaces a pooled connection that died by itself
    error = context.sqlalchemy_exception
    if not (context.is_disconnect or isinstance(error, OperationalError | InterfaceError)):
        return
    code = getattr(context.original_exception, "sqlite_errorcode", None)
    if code is not None and code & 0xFF == _SQLITE_ERROR:
        return
    raise StateStoreError(f"state store unavailable: {_reason(error or context.original_exception)}")


class StateStore:
    """Repository over the state database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str, *, create: bool = True) -> StateStore:
        """Connect, and create or upgrade the schema to the newest revision."""
        url = normalise_url(url)
        try:
            if url.startswith("sqlite:///") and not url.endswith(":memory:"):
                Path(make_url(url).database or "").parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(url, pool_pre_ping=True)
            if engine.dialect.name == "sqlite":
                event.listen(engine, "connect", _sqlite_pragmas)
                event.listen(engine, "checkout", _sqlite_lock_wait)
            store = cls(engine)
            if create:
                migrate(engine)
            # After the migration, whose failures say that the store cannot be opened.
            event.listen(engine, "handle_error", _unavailable)
        except (SQLAlchemyError, OSError, ImportError) as exc:
            raise StateStoreError(f"cannot open the state store {make_url(url)!r}: {_reason(exc)}") from None
        return store

    def close(self) -> None:
        self.engine.dispose()

    def ping(self) -> None:
        """Raise StateStoreError when the database does not answer."""
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            raise StateStoreError(f"state store unreachable: {_reason(exc)}") from None

    @contextmanager
    def begin(self) -> Iterator[StateTransaction]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        with self.engine.begin() as conn:
            yield StateTransaction(conn)

    # -- alarms -----------------------------------------------------------------------------------------------

    def open_alarms(self) -> list[Alarm]:
        """Alarms that are not cleared: the ones the rule engine and operators still have to deal with."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(alarms).where(alarms.c.state.in_(ACTIVE_STATES)).order_by(alarms.c.id))
            return [_from_row(Alarm, row) for row in rows.mappings()]

    def get_alarm(self, alarm_id: int) -> Alarm:
        with self.engine.connect() as conn:
            row = conn.execute(select(alarms).where(alarms.c.id == alarm_id)).mappings().first()
        if row is None:
            raise NotFoundError("alarm", alarm_id)
        return _from_row(Alarm, row)

    def list_alarms(
        self,
        *,
        states: Sequence[AlarmState] | None = None,
        shelved: bool | None = None,
        suppressed: bool | None = None,
        severities: Sequence[Severity] = (),
        site: str | None = None,
        device_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> Page[Alarm]:
        """Alarms, most severe first, then newest first."""
        query = select(alarms)
        if states is not None:
            query = query.where(alarms.c.state.in_(states))
        if shelved is not None:
            query = query.where(alarms.c.shelved == shelved)
        if suppressed is not None:
            query = query.where(alarms.c.suppressed == suppressed)
        if severities:
            query = query.where(alarms.c.severity.in_(severities))
        if site:
            query = query.where(alarms.c.site == site)
        if device_id:
            query = query.where(alarms.c.device_id == device_id)
        ordered = query.order_by(_severity_order(), alarms.c.raised_at.desc(), alarms.c.id.desc())
        with self.engine.connect() as conn:
            total = conn.execute(select(func.count()).select_from(query.subquery())).scalar_one()
            rows = conn.execute(ordered.limit(limit).offset(offset)).mappings()
            return Page([_from_row(Alarm, row) for row in rows], total)

    def alarm_events(self, alarm_id: int) -> list[AlarmEvent]:
        self.get_alarm(alarm_id)
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(alarm_events).where(alarm_events.c.alarm_id == alarm_id).order_by(alarm_events.c.id)
            )
            return [_from_row(AlarmEvent, row) for row in rows.mappings()]

    # -- the live stream: changes after a cursor, each with its alarm or work order as it is now

    def alarm_changes_after(self, after_id: int, limit: int) -> list[tuple[AlarmEvent, Alarm]]:
        return self._alarm_changes(
            select(alarm_events, alarms).join(alarms, alarms.c.id == alarm_events.c.alarm_id),
            alarm_events.c.id > after_id,
            limit,
        )

    def pending_followups(self, before: datetime, limit: int = 100) -> list[tuple[AlarmEvent, Alarm]]:
        """Alarm changes committed before `before` whose consequences are not, oldest first."""
        return self._alarm_changes(
            select(alarm_events, alarms)
            .join(alarm_followups, alarm_followups.c.event_id == alarm_events.c.id)
            .join(alarms, alarms.c.id == alarm_events.c.alarm_id),
            alarm_followups.c.created_at < before,
            limit,
        )

    def _alarm_changes(
        self, joined: Select[Any], where: ColumnElement[bool], limit: int
    ) -> list[tuple[AlarmEvent, Alarm]]:
        """Audit events with their alarm as it is now, oldest first."""
        query = joined.where(where).order_by(alarm_events.c.id).limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(query.set_label_style(LABEL_STYLE_TABLENAME_PLUS_COL)).mappings().all()
        return [
            (_from_row(AlarmEvent, _prefixed(row, "alarm_events_")), _from_row(Alarm, _prefixed(row, "alarms_")))
            for row in rows
        ]

    def work_order_changes_after(self, after_id: int, limit: int) -> list[tuple[WorkOrderEvent, WorkOrder]]:
        query = (
            select(work_order_events, work_orders)
            .join(work_orders, work_orders.c.id == work_order_events.c.work_order_id)
            .where(work_order_events.c.id > after_id)
            .order_by(work_order_events.c.id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query.set_label_style(LABEL_STYLE_TABLENAME_PLUS_COL)).mappings().all()
        return [
            (
                _from_row(WorkOrderEvent, _prefixed(row, "work_order_events_")),
                _from_row(WorkOrder, _prefixed(row, "work_orders_")),
            )
            for row in rows
        ]

    def last_change_ids(self) -> tuple[int, int]:
        """The newest alarm event's and work-order event's ids: where a stream that asks for nothing old starts."""
        with self.engine.connect() as conn:
            a = conn.execute(select(func.max(alarm_events.c.id))).scalar_one_or_none()
            w = conn.execute(select(func.max(work_order_events.c.id))).scalar_one_or_none()
        return a or 0, w or 0

    def count_open_alarms_by_device(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(alarms.c.device_id, func.count())
                .where(alarms.c.state.in_(ACTIVE_STATES))
                .group_by(alarms.c.device_id)
            )
            return {device_id: count for device_id, count in rows}

    # -- rule engine memory -----------------------------------------------------------------------------------

    def load_rule_state(self) -> dict[tuple[str, str], dict[str, Any]]:
        """The rule engine's saved memory, by (rule, device)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(rule_state.c.rule, rule_state.c.device_id, rule_state.c.state))
            return {(rule, device_id): state for rule, device_id, state in rows}

    # -- devices out of service ------------------------------------------------------------------------------

    def out_of_service(self) -> dict[str, ServiceRecord]:
        """Devices taken out of service, by id."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(device_service)).mappings()
            return {row["device_id"]: _from_row(ServiceRecord, row) for row in rows}

    # -- work orders ------------------------------------------------------------------------------------------

    def get_work_order(self, work_order_id: int) -> WorkOrder:
        with self.engine.connect() as conn:
            row = conn.execute(select(work_orders).where(work_orders.c.id == work_order_id)).mappings().first()
        if row is None:
            raise NotFoundError("work order", work_order_id)
        return _from_row(WorkOrder, row)

    def list_work_orders(
        self,
        *,
        statuses: Sequence[WorkOrderStatus] | None = None,
        priorities: Sequence[Priority] = (),
        categories: Sequence[Category] = (),
        sources: Sequence[WorkOrderSource] = (),
        device_id: str | None = None,
        assignee: str | None = None,
        alarm_id: int | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> Page[WorkOrder]:
        """Work orders, most urgent first (priority, then due time)."""
        query = select(work_orders)
        if sources:
            query = query.where(work_orders.c.source.in_(sources))
        if statuses is not None:
            query = query.where(work_orders.c.status.in_(statuses))
        if priorities:
            query = query.where(work_orders.c.priority.in_(priorities))
        if categories:
            query = query.where(work_orders.c.category.in_(categories))
        if assignee:
            query = query.where(work_orders.c.assignee == assignee)
        if device_id:
            query = query.where(work_orders.c.device_id == device_id)
        if alarm_id is not None:
            query = query.where(work_orders.c.alarm_id == alarm_id)
        ordered = query.order_by(work_orders.c.priority, work_orders.c.due_at, work_orders.c.id)
        with self.engine.connect() as conn:
            total = conn.execute(select(func.count()).select_from(query.subquery())).scalar_one()
            rows = conn.execute(ordered.limit(limit).offset(offset)).mappings()
            return Page([_from_row(WorkOrder, row) for row in rows], total)

    def work_order_events(self, work_order_id: int) -> list[WorkOrderEvent]:
        self.get_work_order(work_order_id)
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(work_order_events)
                .where(work_order_events.c.work_order_id == work_order_id)
                .order_by(work_order_events.c.id)
            )
            return [_from_row(WorkOrderEvent, row) for row in rows.mappings()]

    # -- notification outbox ----------------------------------------------------------------------------------

    def work_order_marks(self, work_order_ids: Sequence[int], kinds: Sequence[str]) -> dict[int, set[str]]:
        """Which of `kinds` each work order's history has."""
        marks: dict[int, set[str]] = {}
        if not work_order_ids:
            return marks
        for chunk in range(0, len(work_order_ids), 500):
            ids = list(work_order_ids[chunk : chunk + 500])
            query = (
                select(work_order_events.c.work_order_id, work_order_events.c.kind)
                .where(work_order_events.c.work_order_id.in_(ids), work_order_events.c.kind.in_(list(kinds)))
                .distinct()
            )
            with self.engine.connect() as conn:
                for work_order_id, kind in conn.execute(query):
                    marks.setdefault(work_order_id, set()).add(kind)
        return marks

    def count_work_order_events(self, kinds: Sequence[str], start: datetime, end: datetime) -> dict[str, int]:
        """How many work order events of each of `kinds` happened from `start` up to (not including) `end`."""
        query = (
            select(work_order_events.c.kind, func.count())
            .where(
                work_order_events.c.kind.in_(list(kinds)),
                work_order_events.c.at >= start,
                work_order_events.c.at < end,
            )
            .group_by(work_order_events.c.kind)
        )
        with self.engine.connect() as conn:
            counted: dict[str, int] = {kind: count for kind, count in conn.execute(query)}
        return {kind: counted.get(kind, 0) for kind in kinds}

    def get_notification(self, notification_id: int) -> QueuedNotification:
        with self.engine.connect() as conn:
            row = conn.execute(select(notifications).where(notifications.c.id == notification_id)).mappings().first()
        if row is None:
            raise NotFoundError("notification", notification_id)
        return _from_row(QueuedNotification, row)

    def due_notifications(
        self, now: datetime, limit: int, *, except_channels: Iterable[str] = ()
    ) -> list[QueuedNotification]:
        """Pending notifications whose next attempt is due, oldest first, leaving out those of `except_channels`."""
        query = select(notifications).where(
            notifications.c.state == NotificationState.PENDING, notifications.c.next_attempt_at <= now
        )
        if skipped := list(except_channels):
            query = query.where(notifications.c.channel.not_in(skipped))
        query = query.order_by(notifications.c.created_at, notifications.c.id).limit(limit)
        with self.engine.connect() as conn:
            return [_from_row(QueuedNotification, row) for row in conn.execute(query).mappings()]

    def list_notifications(
        self, *, states: Sequence[NotificationState] | None = None, limit: int = 100, offset: int = 0
    ) -> Page[QueuedNotification]:
        """The notification log, newest first."""
        query = select(notifications)
        if states is not None:
            query = query.where(notifications.c.state.in_(states))
        ordered = query.order_by(notifications.c.id.desc())
        with self.engine.connect() as conn:
            total = conn.execute(select(func.count()).select_from(query.subquery())).scalar_one()
            rows = conn.execute(ordered.limit(limit).offset(offset)).mappings()
            return Page([_from_row(QueuedNotification, row) for row in rows], total)

    def notification_counts(self) -> dict[NotificationState, int]:
        """How many notifications are in each state."""
        query = select(notifications.c.state, func.count()).group_by(notifications.c.state)
        try:
            with self.engine.connect() as conn:
                counted = {NotificationState(state): count for state, count in conn.execute(query)}
        except SQLAlchemyError as exc:
            raise StateStoreError(f"state store unreachable: {_reason(exc)}") from None
        return {state: counted.get(state, 0) for state in NotificationState}

    # -- escalations ------------------------------------------------------------------------------------------

    def escalation_counts(self) -> dict[EscalationState, int]:
        query = select(escalations.c.state, func.count()).group_by(escalations.c.state)
        with self.engine.connect() as conn:
            return {EscalationState(state): count for state, count in conn.execute(query)}

    def due_escalations(self, now: datetime, limit: int = 100) -> list[Escalation]:
        """Escalations whose next paging is due by `now`, earliest first."""
        query = (
            select(escalations)
            .where(
                escalations.c.state.in_((EscalationState.ACTIVE, EscalationState.ACKNOWLEDGED)),
                escalations.c.next_at <= now,
            )
            .order_by(escalations.c.next_at, escalations.c.id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [_from_row(Escalation, row) for row in conn.execute(query).mappings()]

    def get_escalation(self, escalation_id: int) -> Escalation:
        with self.engine.connect() as conn:
            row = conn.execute(select(escalations).where(escalations.c.id == escalation_id)).mappings().first()
        if row is None:
            raise NotFoundError("escalation", escalation_id)
        return _from_row(Escalation, row)

    def escalation_of(self, work_order_id: int) -> Escalation | None:
        with self.engine.connect() as conn:
            row = (
                conn.execute(select(escalations).where(escalations.c.work_order_id == work_order_id)).mappings().first()
            )
        return None if row is None else _from_row(Escalation, row)

    def pages_of(self, work_order_ref: str) -> list[QueuedNotification]:
        """The pages sent (or queued) for a work order, oldest first."""
        query = (
            select(notifications)
            .where(notifications.c.ref.like(f"{work_order_ref}/%"), notifications.c.recipient.is_not(None))
            .order_by(notifications.c.id)
        )
        with self.engine.connect() as conn:
            return [_from_row(QueuedNotification, row) for row in conn.execute(query).mappings()]

    # -- maintenance ------------------------------------------------------------------------------------------

    def last_maintenance_occurrence(self, plan: str, device_id: str) -> MaintenanceOccurrence | None:
        """The latest recorded occurrence of a plan for a device: by due time, or by meter value."""
        query = (
            select(maintenance_occurrences)
            .where(maintenance_occurrences.c.plan == plan, maintenance_occurrences.c.device_id == device_id)
            .order_by(
                maintenance_occurrences.c.due_at.desc().nulls_last(),
                maintenance_occurrences.c.meter_value.desc().nulls_last(),
                maintenance_occurrences.c.created_at.desc(),
            )
            .limit(1)
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return None if row is None else _from_row(MaintenanceOccurrence, row)

    def meter(self, device_id: str, meter: str) -> tuple[float, int] | None:
        """A meter facmon keeps: its value and the epoch-ms time it is counted up to."""
        query = select(meters.c.value, meters.c.until_ms).where(
            meters.c.device_id == device_id, meters.c.meter == meter
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else (float(row[0]), int(row[1]))

    # -- users and tokens -------------------------------------------------------------------------------------

    def user(self, username: str) -> User | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(users).where(users.c.username == username)).mappings().first()
        return None if row is None else _from_row(User, row)

    def list_users(self) -> list[User]:
        with self.engine.connect() as conn:
            return [_from_row(User, row) for row in conn.execute(select(users).order_by(users.c.username)).mappings()]

    def token(self, token_hash: str) -> tuple[ApiToken, User | None] | None:
        """The token with this hash and its user, whatever their state: the caller judges expiry and revocation."""
        query = select(api_tokens).where(api_tokens.c.token_hash == token_hash)
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
            if row is None:
                return None
            token = _from_row(ApiToken, row)
            user = None
            if token.user_id is not None:
                found = conn.execute(select(users).where(users.c.id == token.user_id)).mappings().first()
                user = None if found is None else _from_row(User, found)
        return token, user

    def list_tokens(self, *, kind: str | None = None) -> list[ApiToken]:
        query = select(api_tokens).order_by(api_tokens.c.id)
        if kind is not None:
            query = query.where(api_tokens.c.kind == kind)
        with self.engine.connect() as conn:
            return [_from_row(ApiToken, row) for row in conn.execute(query).mappings()]

    # -- ingest rejects ---------------------------------------------------------------------------------------

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
            raise StateStoreError(f"state store unreachable: {_reason(exc)}") from None

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
            raise StateStoreError(f"cannot prune the rejects: {_reason(exc)}") from None
        return RejectsPruned(expired, over_cap, max(total, 0))

    # -- alarm-system health

    def alarm_transitions(
        self, start: datetime, end: datetime, kinds: Iterable[str], *, site: str | None = None
    ) -> list[AlarmTransition]:
        """Alarm events of these kinds after `start` up to and including `end`, oldest first."""
        query = (
            select(
                alarm_events.c.id,
                alarm_events.c.alarm_id,
                alarms.c.site,
                alarms.c.rule,
                alarms.c.device_id,
                alarm_events.c.kind,
                alarm_events.c.severity,
                alarm_events.c.at,
            )
            .join(alarms, alarms.c.id == alarm_events.c.alarm_id)
            .where(alarm_events.c.at > start, alarm_events.c.at <= end, alarm_events.c.kind.in_(list(kinds)))
            .order_by(alarm_events.c.at, alarm_events.c.id)
        )
        if site:
            query = query.where(alarms.c.site == site)
        with self.engine.connect() as conn:
            return [_from_row(AlarmTransition, row) for row in conn.execute(query).mappings()]

    def active_alarms_raised_before(self, before: datetime, *, site: str | None = None) -> list[Alarm]:
        """Alarms not yet cleared that were raised before `before`, oldest first."""
        query = select(alarms).where(alarms.c.state.in_(ACTIVE_STATES), alarms.c.raised_at < before)
        if site:
            query = query.where(alarms.c.site == site)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(alarms.c.raised_at, alarms.c.id)).mappings()
            return [_from_row(Alarm, row) for row in rows]

    def open_floods(self) -> list[AlarmFlood]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(alarm_floods).where(alarm_floods.c.ended_at.is_(None)).order_by(alarm_floods.c.id)
            ).mappings()
            return [_from_row(AlarmFlood, row) for row in rows]

    def floods_overlapping(self, start: datetime, end: datetime, *, site: str | None = None) -> list[AlarmFlood]:
        """Floods that were open at some time after `start` up to and including `end`, oldest first."""
        query = select(alarm_floods).where(
            alarm_floods.c.started_at <= end,
            (alarm_floods.c.ended_at.is_(None)) | (alarm_floods.c.ended_at > start),
        )
        if site:
            query = query.where(alarm_floods.c.site == site)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(alarm_floods.c.started_at, alarm_floods.c.id)).mappings()
            return [_from_row(AlarmFlood, row) for row in rows]

    # -- monthly reports

    def alarm_counts(self, start: datetime, end: datetime) -> list[AlarmCount]:
        """Alarms raised from `start` up to `end` (excluded), not suppressed, counted per device, rule and severity."""
        query = (
            select(alarms.c.device_id, alarms.c.site, alarms.c.rule, alarms.c.severity, func.count().label("count"))
            .where(alarms.c.raised_at >= start, alarms.c.raised_at < end, alarms.c.suppressed.is_(False))
            .group_by(alarms.c.device_id, alarms.c.site, alarms.c.rule, alarms.c.severity)
            .order_by(alarms.c.device_id, alarms.c.rule, alarms.c.severity)
        )
        with self.engine.connect() as conn:
            return [_from_row(AlarmCount, row) for row in conn.execute(query).mappings()]

    def first_acknowledgements(self, start: datetime, end: datetime) -> list[tuple[datetime, datetime | None]]:
        """Of each alarm raised from `start` up to `end`, not suppressed: when it was raised and first acknowledged."""
        first_ack = (
            select(alarm_events.c.alarm_id, func.min(alarm_events.c.at).label("at"))
            .where(alarm_events.c.kind == "acknowledged")
            .group_by(alarm_events.c.alarm_id)
            .subquery()
        )
        query = (
            select(alarms.c.raised_at, first_ack.c.at)
            .outerjoin(first_ack, first_ack.c.alarm_id == alarms.c.id)
            .where(alarms.c.raised_at >= start, alarms.c.raised_at < end, alarms.c.suppressed.is_(False))
            .order_by(alarms.c.id)
        )
        with self.engine.connect() as conn:
            return [(raised, acked) for raised, acked in conn.execute(query)]

    def work_orders_created(self, start: datetime, end: datetime) -> list[WorkOrder]:
        """Work orders opened from `start` up to (not including) `end`, oldest first."""
        query = (
            select(work_orders)
            .where(work_orders.c.created_at >= start, work_orders.c.created_at < end)
            .order_by(work_orders.c.created_at, work_orders.c.id)
        )
        with self.engine.connect() as conn:
            return [_from_row(WorkOrder, row) for row in conn.execute(query).mappings()]


class StateTransaction:
    """The writes of one transaction."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def _insert(self, table: Table, values: Mapping[str, Any]) -> int:
        """Insert a row of a domain object's values, the database giving its id; the id given."""
        new_id: int = self.conn.execute(insert(table).values(_without_id(values)).returning(table.c.id)).scalar_one()
        return new_id

    def insert_alarm(self, alarm: Alarm) -> Alarm:
        """Insert a new alarm (its `id` is ignored) and return it with the id it was given."""
        values = _alarm_row(alarm)
        return replace(alarm, id=self._insert(alarms, values), updated_at=values["updated_at"])

    def update_alarm(self, alarm: Alarm) -> None:
        result = self.conn.execute(update(alarms).where(alarms.c.id == alarm.id).values(_alarm_row(alarm)))
        if result.rowcount == 0:
            raise NotFoundError("alarm", alarm.id)

    def add_alarm_event(self, event: AlarmEvent, *, follow_up: bool = False) -> AlarmEvent:
        """Record the event; with `follow_up`, also that its consequences are still to be committed."""
        recorded = replace(event, id=self._insert(alarm_events, _row_values(event)))
        if follow_up:
            self.conn.execute(insert(alarm_followups).values(event_id=recorded.id, created_at=event.at))
        return recorded

    def take_followup(self, event_id: int) -> bool:
        """Mark the event's consequences as committed with this transaction; False when they already were."""
        deleted = self.conn.execute(delete(alarm_followups).where(alarm_followups.c.event_id == event_id))
        return bool(deleted.rowcount)

    def work_orders_of_alarm(self, alarm_id: int, statuses: Sequence[WorkOrderStatus] | None = None) -> list[WorkOrder]:
        query = select(work_orders).where(work_orders.c.alarm_id == alarm_id)
        if statuses is not None:
            query = query.where(work_orders.c.status.in_(statuses))
        rows = self.conn.execute(query.order_by(work_orders.c.id)).mappings()
        return [_from_row(WorkOrder, row) for row in rows]

    def save_rule_state(self, rows: Sequence[tuple[str, str, dict[str, Any]]], at: datetime) -> None:
        """Insert or replace the memory of these (rule, device) pairs."""
        if not rows:
            return
        values = [{"rule": r, "device_id": d, "state": state, "updated_at": at} for r, d, state in rows]
        upsert = postgresql_insert if self.conn.dialect.name == "postgresql" else sqlite_insert
        statement = upsert(rule_state)
        self.conn.execute(
            statement.on_conflict_do_update(
                index_elements=[rule_state.c.rule, rule_state.c.device_id],
                set_={"state": statement.excluded.state, "updated_at": statement.excluded.updated_at},
            ),
            values,
        )

    def take_out_of_service(self, record: ServiceRecord) -> None:
        self.conn.execute(delete(device_service).where(device_service.c.device_id == record.device_id))
        self.conn.execute(insert(device_service).values(_row_values(record)))

    def return_to_service(self, device_id: str) -> None:
        self.conn.execute(delete(device_service).where(device_service.c.device_id == device_id))

    def next_work_order_number(self, day: str) -> str:
        """Allocate WO-YYYYMMDD-NNNN for `day` (YYYYMMDD, in the facility's timezone)."""
        bumped = self.conn.execute(
            update(work_order_counters)
            .where(work_order_counters.c.day == day)
            .values(last=work_order_counters.c.last + 1)
            .returning(work_order_counters.c.last)
        ).scalar_one_or_none()
        if bumped is None:
            self.conn.execute(insert(work_order_counters).values(day=day, last=1))
            bumped = 1
        return f"WO-{day}-{bumped:04d}"

    def get_work_order(self, work_order_id: int) -> WorkOrder:
        """Read a work order and, on PostgreSQL, lock its row until the transaction ends, so changes queue up."""
        row = (
            self.conn.execute(select(work_orders).where(work_orders.c.id == work_order_id).with_for_update())
            .mappings()
            .first()
        )
        if row is None:
            raise NotFoundError("work order", work_order_id)
        return _from_row(WorkOrder, row)

    def insert_work_order(self, order: WorkOrder) -> WorkOrder:
        values = _work_order_row(order)
        return replace(order, id=self._insert(work_orders, values), updated_at=values["updated_at"])

    def update_work_order(self, order: WorkOrder) -> None:
        result = self.conn.execute(
            update(work_orders).where(work_orders.c.id == order.id).values(_work_order_row(order))
        )
        if result.rowcount == 0:
            raise NotFoundError("work order", order.id)

    def add_work_order_event(self, event: WorkOrderEvent) -> None:
        self._insert(work_order_events, _row_values(event))

    def has_work_order_event(self, work_order_id: int, kind: str) -> bool:
        """Whether the work order's history has a line of this kind."""
        query = select(work_order_events.c.id).where(
            work_order_events.c.work_order_id == work_order_id, work_order_events.c.kind == kind
        )
        return self.conn.execute(query.limit(1)).first() is not None

    def unfinished_work_order_of_rule(
        self, device_id: str, rule: str, since: datetime, statuses: Sequence[WorkOrderStatus]
    ) -> WorkOrder | None:
        """The newest work order in `statuses`, opened since `since` by an alarm of `rule` on the device."""
        query = (
            select(work_orders)
            .join(alarms, work_orders.c.alarm_id == alarms.c.id)
            .where(
                work_orders.c.device_id == device_id,
                alarms.c.rule == rule,
                work_orders.c.status.in_(statuses),
                work_orders.c.created_at >= since,
            )
            .order_by(work_orders.c.created_at.desc(), work_orders.c.id.desc())
            .limit(1)
        )
        row = self.conn.execute(query).mappings().first()
        return _from_row(WorkOrder, row) if row is not None else None

    # -- notification outbox

    def queue_notification(
        self,
        *,
        channel: str,
        kind: str,
        ref: str,
        language: str,
        subject: str,
        body: str,
        at: datetime,
        recipient: str | None = None,
        address: str | None = None,
    ) -> int | None:
        """Queue a message for a channel, due at once; None when (channel, kind, ref) was queued before."""
        upsert = postgresql_insert if self.conn.dialect.name == "postgresql" else sqlite_insert
        statement = (
            upsert(notifications)
            .values(
                channel=channel,
                kind=kind,
                ref=ref,
                language=language,
                subject=subject,
                body=body,
                state=NotificationState.PENDING,
                attempts=0,
                next_attempt_at=at,
                created_at=at,
                recipient=recipient,
                address=address,
            )
            .on_conflict_do_nothing(index_elements=["channel", "kind", "ref"])
            .returning(notifications.c.id)
        )
        new_id: int | None = self.conn.execute(statement).scalar_one_or_none()
        return new_id

    def claim_notification(
        self, notification_id: int, now: datetime, lease_until: datetime
    ) -> QueuedNotification | None:
        """Count an attempt and hold the row until `lease_until`; None if it is not pending and due (any more)."""
        row = (
            self.conn.execute(
                update(notifications)
                .where(
                    notifications.c.id == notification_id,
                    notifications.c.state == NotificationState.PENDING,
                    notifications.c.next_attempt_at <= now,
                )
                .values(attempts=notifications.c.attempts + 1, next_attempt_at=lease_until)
                .returning(*notifications.c)
            )
            .mappings()
            .first()
        )
        return None if row is None else _from_row(QueuedNotification, row)

    def record_notification_outcome(
        self,
        claimed: QueuedNotification,
        state: NotificationState,
        *,
        next_attempt_at: datetime | None = None,
        sent_at: datetime | None = None,
        error: str | None = None,
    ) -> bool:
        """Write the outcome of the attempt `claimed` stands for; False if another attempt has claimed it since."""
        values: dict[str, Any] = {"state": state, "sent_at": sent_at}
        if next_attempt_at is not None:
            values["next_attempt_at"] = next_attempt_at
        if error is not None:
            values["last_error"] = error[:LAST_ERROR_MAX]
        result = self.conn.execute(
            update(notifications)
            .where(
                notifications.c.id == claimed.id,
                notifications.c.state == NotificationState.PENDING,
                notifications.c.attempts == claimed.attempts,
            )
            .values(values)
        )
        return bool(result.rowcount)

    # -- escalations

    def insert_escalation(self, escalation: Escalation) -> Escalation:
        return replace(escalation, id=self._insert(escalations, _row_values(escalation)))

    def escalation_of(self, work_order_id: int) -> Escalation | None:
        row = (
            self.conn.execute(select(escalations).where(escalations.c.work_order_id == work_order_id))
            .mappings()
            .first()
        )
        return None if row is None else _from_row(Escalation, row)

    def get_escalation(self, escalation_id: int) -> Escalation:
        """Read an escalation and, on PostgreSQL, lock its row until the transaction ends."""
        query = select(escalations).where(escalations.c.id == escalation_id).with_for_update()
        row = self.conn.execute(query).mappings().first()
        if row is None:
            raise NotFoundError("escalation", escalation_id)
        return _from_row(Escalation, row)

    def update_escalation(self, before: Escalation, after: Escalation) -> bool:
        """Write `after` if the row is still as `before` left it (same state and pagings); False if it moved on."""
        result = self.conn.execute(
            update(escalations)
            .where(
                escalations.c.id == before.id,
                escalations.c.state == before.state,
                escalations.c.pages == before.pages,
            )
            .values(_without_id(_row_values(after)))
        )
        return bool(result.rowcount)

    # -- users and tokens

    def insert_user(self, user: User) -> User:
        return replace(user, id=self._insert(users, _row_values(user)))

    def get_user(self, username: str) -> User | None:
        """Read a user and, on PostgreSQL, lock the row: concurrent sign-ins count their failures one by one."""
        row = self.conn.execute(select(users).where(users.c.username == username).with_for_update()).mappings().first()
        return None if row is None else _from_row(User, row)

    def update_user(self, user: User) -> None:
        self.conn.execute(update(users).where(users.c.id == user.id).values(_without_id(_row_values(user))))

    def count_sign_in_attempt(self, username: str, at: datetime, *, limit: int, locks_until: datetime) -> User | None:
        """Count an attempt to sign in as `username` before its password is checked, in one statement: concurrent
        attempts each get a count of their own, so that no more than `limit` in a row reach a password check. The
        attempt that reaches `limit` locks the user out until `locks_until`; the first after a lockout counts 1.
        The user as counted, or None when there is no such user."""
        c = users.c
        lockout_over = and_(c.locked_until.is_not(None), c.locked_until <= at, c.failed_logins >= limit)
        count = case((lockout_over, 1), else_=c.failed_logins + 1)
        not_locked = or_(c.locked_until.is_(None), c.locked_until <= at)
        until = case((and_(count >= limit, not_locked), literal(locks_until, UTCDateTime())), else_=c.locked_until)
        counted = update(users).where(c.username == username).values(failed_logins=count, locked_until=until)
        row = self.conn.execute(counted.returning(*c)).mappings().first()
        return None if row is None else _from_row(User, row)

    def insert_token(self, token: ApiToken) -> ApiToken:
        return replace(token, id=self._insert(api_tokens, _row_values(token)))

    def revoke_token(self, token_id: int, at: datetime, *, kind: str | None = None) -> bool:
        """Revoke a token (of `kind` only, when given); False if there is no such token still valid."""
        query = update(api_tokens).where(api_tokens.c.id == token_id, api_tokens.c.revoked_at.is_(None))
        if kind is not None:
            query = query.where(api_tokens.c.kind == kind)
        return bool(self.conn.execute(query.values(revoked_at=at)).rowcount)

    def revoke_sessions(self, user_id: int, at: datetime) -> int:
        """End every session of a user; how many were still open."""
        result = self.conn.execute(
            update(api_tokens)
            .where(api_tokens.c.user_id == user_id, api_tokens.c.kind == "session", api_tokens.c.revoked_at.is_(None))
            .values(revoked_at=at)
        )
        return int(result.rowcount)

    def touch_token(self, token_id: int, at: datetime) -> None:
        self.conn.execute(update(api_tokens).where(api_tokens.c.id == token_id).values(last_used_at=at))

    # -- maintenance

    def add_maintenance_occurrence(self, occurrence: MaintenanceOccurrence) -> bool:
        """Record an occurrence; False when it was recorded before (by an earlier run or another instance)."""
        upsert = postgresql_insert if self.conn.dialect.name == "postgresql" else sqlite_insert
        statement = (
            upsert(maintenance_occurrences)
            .values(_row_values(occurrence))
            .on_conflict_do_nothing(index_elements=["plan", "device_id", "due_key"])
        )
        return bool(self.conn.execute(statement).rowcount)

    def set_maintenance_work_order(self, plan: str, device_id: str, due_key: str, work_order_id: int) -> None:
        self.conn.execute(
            update(maintenance_occurrences)
            .where(
                maintenance_occurrences.c.plan == plan,
                maintenance_occurrences.c.device_id == device_id,
                maintenance_occurrences.c.due_key == due_key,
            )
            .values(work_order_id=work_order_id)
        )

    def save_meter(self, device_id: str, meter: str, value: float, until_ms: int) -> None:
        upsert = postgresql_insert if self.conn.dialect.name == "postgresql" else sqlite_insert
        statement = upsert(meters).values(device_id=device_id, meter=meter, value=value, until_ms=until_ms)
        self.conn.execute(
            statement.on_conflict_do_update(
                index_elements=["device_id", "meter"], set_={"value": value, "until_ms": until_ms}
            )
        )

    def add_rejects(self, rejects: Iterable[Reject]) -> None:
        rows = [
            {"topic": r.topic, "reason": r.reason, "received_at": r.received_at, "payload": r.payload} for r in rejects
        ]
        if rows:
            self.conn.execute(insert(ingest_rejects), rows)

    # -- alarm-system health

    def insert_flood(self, site: str, started_at: datetime, peak: int) -> AlarmFlood:
        new_id = self.conn.execute(
            insert(alarm_floods).values(site=site, started_at=started_at, peak=peak).returning(alarm_floods.c.id)
        ).scalar_one()
        return AlarmFlood(new_id, site, started_at, None, peak)

    def update_flood(self, flood: AlarmFlood) -> None:
        """Write a flood's peak and end."""
        result = self.conn.execute(
            update(alarm_floods).where(alarm_floods.c.id == flood.id).values(peak=flood.peak, ended_at=flood.ended_at)
        )
        if result.rowcount == 0:
            raise NotFoundError("alarm flood", flood.id)


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


def _severity_order() -> Any:
    return case({s.value: 5 - s.rank for s in Severity}, value=alarms.c.severity, else_=9)


def _reason(exc: BaseException) -> str:
    text_ = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return text_[0] if text_ else type(exc).__name__


def _prefixed(row: Any, prefix: str) -> dict[str, Any]:
    """The columns of one table out of a joined row labelled `table_column`."""
    return {key[len(prefix) :]: value for key, value in row.items() if key.startswith(prefix)}


def _without_id(values: Mapping[str, Any]) -> dict[str, Any]:
    """Column values without `id`, which the database gives (insert) or which does not change (update)."""
    return {name: value for name, value in values.items() if name != "id"}


def _row_values(obj: Any) -> dict[str, Any]:
    """A domain dataclass as column values: its fields are named as the table's columns."""
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


def _alarm_row(alarm: Alarm) -> dict[str, Any]:
    return {**_row_values(alarm), "updated_at": alarm.updated_at or alarm.raised_at}


def _work_order_row(order: WorkOrder) -> dict[str, Any]:
    return {**_row_values(order), "updated_at": order.updated_at or order.created_at}


_ENUM_FIELDS: dict[type, dict[str, type[Enum]]] = {}


def _enum_of(hint: Any) -> type[Enum] | None:
    """The enum of a field typed `E` or `E | None`."""
    for candidate in (hint, *get_args(hint)):
        if isinstance(candidate, type) and issubclass(candidate, Enum):
            return candidate
    return None


def _from_row(cls: type[D], row: Any) -> D:
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
