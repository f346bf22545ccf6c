"""Rule state, alarm floods, out of service, shelving and latching

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import facmon.facility.state

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alarm_floods",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("started_at", facmon.facility.state.UTCDateTime(timezone=True), nullable=False),
        sa.Column("ended_at", facmon.facility.state.UTCDateTime(timezone=True), nullable=True),
        sa.Column("peak", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("alarm_floods", schema=None) as batch_op:
        batch_op.create_index("ix_alarm_floods_site_started", ["site", "started_at"], unique=False)

    op.create_table(
        "device_service",
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("since", facmon.facility.state.UTCDateTime(timezone=True), nullable=False),
        sa.Column("until", facmon.facility.state.UTCDateTime(timezone=True), nullable=True),
        sa.Column("by", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("device_id"),
    )
    op.create_table(
        "rule_state",
        sa.Column("rule", sa.String(length=64), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("updated_at", facmon.facility.state.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("rule", "device_id"),
    )
    with op.batch_alter_table("alarms", schema=None) as batch_op:
        batch_op.add_column(sa.Column("latched", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column("shelved_until", facmon.facility.state.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("shelved_by", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("shelve_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("alarms", schema=None) as batch_op:
        batch_op.drop_column("shelve_reason")
        batch_op.drop_column("shelved_by")
        batch_op.drop_column("shelved_until")
        batch_op.drop_column("latched")

    op.drop_table("rule_state")
    op.drop_table("device_service")
    with op.batch_alter_table("alarm_floods", schema=None) as batch_op:
        batch_op.drop_index("ix_alarm_floods_site_started")

    op.drop_table("alarm_floods")
