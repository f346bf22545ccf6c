"""Leases of partitions and of the leader, and the workers of a cluster

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import facmon.facility.state

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("owner", sa.String(length=128), nullable=True),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("acquired_at", facmon.facility.state.UTCDateTime(timezone=True), nullable=True),
        sa.Column("renewed_at", facmon.facility.state.UTCDateTime(timezone=True), nullable=True),
        sa.Column("expires_at", facmon.facility.state.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "cluster_workers",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("started_at", facmon.facility.state.UTCDateTime(timezone=True), nullable=False),
        sa.Column("seen_at", facmon.facility.state.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("cluster_workers")
    op.drop_table("leases")
