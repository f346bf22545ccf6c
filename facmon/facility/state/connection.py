"""Opening the database: URLs, the schema's migrations, SQLite's settings and lock waits, and how a failure is told."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from alembic import command as alembic_command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import ExceptionContext, make_url
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.pool import ConnectionPoolEntry

from facmon.facility.errors import StateStoreError
from facmon.facility.state.rows import error_reason


def normalise_url(url: str) -> str:
    """Use psycopg 3 for PostgreSQL URLs that name no driver."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision; a database made before revisions were kept is adopted as 0001."""
    config = AlembicConfig()
    config.set_main_option("script_location", "facmon.facility.state:migrations")
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
    raise StateStoreError(f"state store unavailable: {error_reason(error or context.original_exception)}")


def connect(url: str, *, create: bool = True) -> Engine:
    """An engine for the state store at `url`, its schema created or upgraded to the newest revision first."""
    url = normalise_url(url)
    try:
        if url.startswith("sqlite:///") and not url.endswith(":memory:"):
            Path(make_url(url).database or "").parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, pool_pre_ping=True)
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
            event.listen(engine, "checkout", _sqlite_lock_wait)
        if create:
            migrate(engine)
        # After the migration, whose failures say that the store cannot be opened.
        event.listen(engine, "handle_error", _unavailable)
    except (SQLAlchemyError, OSError, ImportError) as exc:
        raise StateStoreError(f"cannot open the state store {make_url(url)!r}: {error_reason(exc)}") from None
    return engine
