"""Work order lifecycle: response, resolution and closing times; transitions in the history

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import facmon.facility.state

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("work_orders", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("first_response_at", facmon.facility.state.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("resolved_at", facmon.facility.state.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("closed_at", facmon.facility.state.UTCDateTime(timezone=True), nullable=True))
    with op.batch_alter_table("work_order_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("from_status", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("assignee", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("work_order_events", schema=None) as batch_op:
        batch_op.drop_column("assignee")
        batch_op.drop_column("from_status")
    with op.batch_alter_table("work_orders", schema=None) as batch_op:
        batch_op.drop_column("closed_at")
        batch_op.drop_column("resolved_at")
        batch_op.drop_column("first_response_at")
