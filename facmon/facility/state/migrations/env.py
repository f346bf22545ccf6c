"""Alembic environment: migrations run on the connection `StateStore.open` hands over."""

from __future__ import annotations

from alembic import context

from facmon.facility.state.schema import metadata

connection = context.config.attributes["connection"]
# Batch mode lets ALTER TABLE work on SQLite, which can only add columns in place.
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True, compare_type=True)
with context.begin_transaction():
    context.run_migrations()
