"""The schema comes from the migrations, on SQLite and PostgreSQL, and matches what the code declares."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text

from facmon.facility.state import StateStore, normalise_url
from facmon.facility.state.schema import metadata


def head() -> str:
    config = Config()
    config.set_main_option("script_location", "facmon.facility.state:migrations")
    revision = ScriptDirectory.from_config(config).get_current_head()
    assert revision is not None
    return revision


def current_revision(url: str) -> str | None:
    engine = create_engine(normalise_url(url))
    with engine.connect() as conn:
        revision = MigrationContext.configure(conn).get_current_revision()
    engine.dispose()
    return revision


def test_a_new_database_is_migrated_to_head_and_matches_the_declared_schema(state_url: str) -> None:
    StateStore.open(state_url).close()
    assert current_revision(state_url) == head()
    engine = create_engine(normalise_url(state_url))
    with engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    engine.dispose()
    assert differences == [], "the tables in state/schema.py and the migrations disagree: add a migration"


def test_opening_again_is_a_no_op(state_url: str) -> None:
    StateStore.open(state_url).close()
    StateStore.open(state_url).close()
    assert current_revision(state_url) == head()


def upgrade_to(state_url: str, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", "facmon.facility.state:migrations")
    engine = create_engine(normalise_url(state_url))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)
    engine.dispose()


def test_a_database_from_before_revisions_is_adopted_and_upgraded(state_url: str) -> None:
    upgrade_to(state_url, "0001")
    engine = create_engine(normalise_url(state_url))
    with engine.begin() as conn:  # as the first release left it: the baseline tables, no version table
        conn.execute(text("DROP TABLE alembic_version"))
    engine.dispose()
    reopened = StateStore.open(state_url)
    assert current_revision(state_url) == head()
    assert "rule_state" in inspect(reopened.engine).get_table_names()
    reopened.close()


def test_rows_survive_each_upgrade(state_url: str) -> None:
    upgrade_to(state_url, "0001")
    engine = create_engine(normalise_url(state_url))
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO alarms (rule, device_id, site, severity, state, shelved, suppressed, raised_at,"
                " updated_at, message) VALUES ('low', 'pump-1', 'riverside', 'major', 'active_unacked', false, false,"
                " '2026-11-22 02:00:00', '2026-11-22 02:00:00', 'low')"
            )
        )
    engine.dispose()
    store = StateStore.open(state_url)
    [alarm] = store.open_alarms()
    assert (alarm.rule, alarm.latched, alarm.shelved_until) == ("low", False, None)
    store.close()
