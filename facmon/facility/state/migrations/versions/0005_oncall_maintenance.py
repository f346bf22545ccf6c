"""On-call paging and preventive maintenance: escalations, pages' recipients, maintenance occurrences, meters

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import facmon.facility.state

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.add_column(sa.Column("recipient", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("address", sa.String(length=256), nullable=True))
        batch_op.alter_column("ref", existing_type=sa.String(length=64), type_=sa.String(length=160))
    op.create_table(
        "escalations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("work_order_id", sa.Integer(), nullable=False),
        sa.Column("policy", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("pages", sa.Integer(), nullable=False),
        sa.Column("started_at", facmon.facility.state.UTCDateTime(timezone=True), nullable=False),
        sa.Column("next_at", facmon.facility.state.UTCDateTime(timezone=True), nullable=True),
        sa.Column("acked_at", facmon.facility.state.UTCDateTime(timezone=True), nullable=True),
        sa.Column("acked_by", sa.String(length=64), nullable=True),
        sa.Column("ended_at", facmon.facility.state.UTCDateTime(timezone=True), nullable=True),
        sa.Column("end_reason", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(["work_order_id"], ["work_orders.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("work_order_id"),
    )
    with op.batch_alter_table("escalations", schema=None) as batch_op:
        batch_op.create_index("ix_escalations_state_next", ["state", "next_at"], unique=False)
    op.create_table(
        "maintenance_occurrences",
        sa.Column("plan", sa.String(length=64), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("due_key", sa.String(length=32), nullable=False),
        sa.Column("created_at", facmon.facility.state.UTCDateTime(timezone=True), nullable=False),
        sa.Column("due_at", facmon.facility.state.UTCDateTime(timezone=True), nullable=True),
        sa.Column("meter_value", sa.Float(), nullable=True),
        sa.Column("work_order_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["work_order_id"], ["work_orders.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("plan", "device_id", "due_key"),
    )
    op.create_table(
        "meters",
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("meter", sa.String(length=32), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("until_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("device_id", "meter"),
    )


def downgrade() -> None:
    op.drop_table("meters")
    op.drop_table("maintenance_occurrences")
    with op.batch_alter_table("escalations", schema=None) as batch_op:
        batch_op.drop_index("ix_escalations_state_next")
    op.drop_table("escalations")
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.alter_column("ref", existing_type=sa.String(length=160), type_=sa.String(length=64))
        batch_op.drop_column("address")
        batch_op.drop_column("recipient")
