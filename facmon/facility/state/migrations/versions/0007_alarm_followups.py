"""Alarm changes whose work orders and pages are still to be committed

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import facmon.facility.state

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alarm_followups",
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("created_at", facmon.facility.state.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["event_id"], ["alarm_events.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("event_id"),
    )
    op.create_index("ix_alarm_followups_created_at", "alarm_followups", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_alarm_followups_created_at", table_name="alarm_followups")
    op.drop_table("alarm_followups")
