"""clusters opt in to the autoscaler: their autoscaling settings, and the load the gateways
measure (request-seconds per period, requests in flight per replica)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05 18:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import gpuyard.server.orm

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("clusters") as batch:
        batch.add_column(
            sa.Column(
                "autoscaling",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=True,
            )
        )
    op.create_table(
        "cluster_load_samples",
        sa.Column("pk", _PK, autoincrement=True, nullable=False),
        sa.Column("cluster_id", sa.String(length=32), nullable=False),
        sa.Column("period_start", gpuyard.server.orm.base.UTCDateTime(), nullable=False),
        sa.Column("busy_seconds", sa.Float(), nullable=False),
        sa.Column("refused", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_cluster_load_samples")),
        sa.UniqueConstraint("cluster_id", "period_start", name="uq_cluster_load_samples_period"),
    )
    op.create_index(
        "ix_cluster_load_samples_period_start", "cluster_load_samples", ["period_start"]
    )
    op.create_table(
        "replica_in_flight",
        sa.Column("pk", _PK, autoincrement=True, nullable=False),
        sa.Column("replica_id", sa.String(length=32), nullable=False),
        sa.Column("reporter", sa.String(length=40), nullable=False),
        sa.Column("cluster_id", sa.String(length=32), nullable=False),
        sa.Column("in_flight", sa.Integer(), nullable=False),
        sa.Column("reported_at", gpuyard.server.orm.base.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_replica_in_flight")),
        sa.UniqueConstraint("replica_id", "reporter", name="uq_replica_in_flight_reporter"),
    )
    op.create_index("ix_replica_in_flight_cluster", "replica_in_flight", ["cluster_id"])


def downgrade() -> None:
    op.drop_index("ix_replica_in_flight_cluster", table_name="replica_in_flight")
    op.drop_table("replica_in_flight")
    op.drop_index("ix_cluster_load_samples_period_start", table_name="cluster_load_samples")
    op.drop_table("cluster_load_samples")
    with op.batch_alter_table("clusters") as batch:
        batch.drop_column("autoscaling")
