"""Alembic migrations of the state store's schema; applied by `StateStore.open`."""
