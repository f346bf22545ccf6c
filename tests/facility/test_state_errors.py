"""What the state store raises when its database fails: StateStoreError for an outage or a lock, one line, whatever
the call; SQLAlchemy's own errors for constraint violations and mistakes in a statement."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError, OperationalError

from facmon.cmd.broker import free_port
from facmon.facility.errors import StateStoreError
from facmon.facility.model import Role, User
from facmon.facility.state import StateStore, lock_wait

T0 = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)


@pytest.fixture
def locked(tmp_path: Path, sqlite_store: StateStore) -> Iterator[sqlite3.Connection]:
    """The state file, with another connection holding the write lock."""
    other = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    yield other
    other.rollback()
    other.close()


def test_a_write_to_a_locked_database_is_a_state_store_error(sqlite_store: StateStore, locked: object) -> None:
    with pytest.raises(StateStoreError) as raised, lock_wait(0.2), sqlite_store.begin() as tx:
        tx.insert_user(User(0, "li.na", "Li Na", Role.OPERATOR, "hash", T0))
    assert str(raised.value) == "state store unavailable: database is locked"
    assert sqlite_store.list_users() == []  # reads go on: the write-ahead log


def test_a_request_s_lock_wait_is_the_busy_timeout_of_the_connections_it_uses(sqlite_store: StateStore) -> None:
    def busy_timeout() -> int:
        with sqlite_store.engine.connect() as conn:
            return int(conn.execute(text("PRAGMA busy_timeout")).scalar_one())

    assert busy_timeout() == 10_000
    with lock_wait(0.25):
        assert busy_timeout() == 250
    assert busy_timeout() == 10_000  # the same pooled connection, given back its own


def test_a_server_that_does_not_answer_is_a_state_store_error_from_any_call() -> None:
    store = StateStore.open(f"postgresql://facmon@127.0.0.1:{free_port()}/facmon", create=False)
    try:
        for call in (lambda: store.user("li.na"), store.ping, store.list_users, store.open_alarms):
            with pytest.raises(StateStoreError, match=r"^state store unavailable: connection failed") as raised:
                call()
            assert "\n" not in str(raised.value)
    finally:
        store.close()


def test_a_constraint_or_a_bad_statement_is_not_an_outage(sqlite_store: StateStore) -> None:
    user = User(0, "li.na", "Li Na", Role.OPERATOR, "hash", T0)
    with sqlite_store.begin() as tx:
        tx.insert_user(user)
    with pytest.raises(IntegrityError), sqlite_store.begin() as tx:
        tx.insert_user(user)
    with pytest.raises(OperationalError, match="no such table"), sqlite_store.engine.connect() as conn:
        conn.execute(text("SELECT * FROM no_such_table"))


def test_a_pooled_connection_the_server_ended_is_replaced_not_reported(state_url: str) -> None:
    if not state_url.startswith("postgresql"):
        pytest.skip("SQLite has no server to end a connection")
    store = StateStore.open(state_url)
    admin = create_engine(state_url)
    try:
        store.ping()  # a connection now waits in the pool
        with admin.connect() as conn:
            ended = conn.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).scalar_one()
        assert ended >= 1
        store.ping()  # the pool's ping finds it dead and opens another, without an error
        assert store.list_users() == []
    finally:
        admin.dispose()
        store.close()
