"""controller schedule: a next-run time on every controlled row

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 12:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import gpuyard.server.orm

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TABLES = ("api_keys", "hosts", "clusters")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(
                sa.Column(
                    "next_run_at", gpuyard.server.orm.UTCDateTime(timezone=True), nullable=True
                )
            )
    # Clusters are always due at their next-run time: fetch reads them oldest-due first.
    op.create_index("ix_clusters_next_run_at", "clusters", ["next_run_at"])
    # Rows parked by the old scheme (a placeholder lease) become due when that lease ends.
    for table in TABLES:
        op.execute(
            f"UPDATE {table} SET next_run_at = lease_expires_at, lease_token = NULL, "
            "lease_owner = NULL, lease_expires_at = NULL WHERE lease_token = 'backoff'"
        )


def downgrade() -> None:
    op.drop_index("ix_clusters_next_run_at", table_name="clusters")
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("next_run_at")
