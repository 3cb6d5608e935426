"""billing: storage meters beside compute meters, and the storage price recorded with a charge

Revision ID: 0014
Revises: 0011
Create Date: 2026-12-05 16:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("meters") as batch:
        batch.add_column(
            sa.Column("basis", sa.String(length=16), nullable=False, server_default="compute")
        )
        batch.add_column(
            sa.Column("rate_seconds", sa.Integer(), nullable=False, server_default="3600")
        )
        batch.add_column(sa.Column("disk_gb", sa.Integer(), nullable=True))
        batch.drop_constraint("uq_meters_workload_id", type_="unique")
        batch.create_unique_constraint("uq_meters_workload_basis", ["workload_id", "basis"])
    with op.batch_alter_table("ledger_entries") as batch:
        batch.add_column(sa.Column("disk_gb", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("cents_per_gb_month", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ledger_entries") as batch:
        batch.drop_column("cents_per_gb_month")
        batch.drop_column("disk_gb")
    op.execute("DELETE FROM meters WHERE basis <> 'compute'")
    with op.batch_alter_table("meters") as batch:
        batch.drop_constraint("uq_meters_workload_basis", type_="unique")
        batch.create_unique_constraint("uq_meters_workload_id", ["workload_id"])
        batch.drop_column("disk_gb")
        batch.drop_column("rate_seconds")
        batch.drop_column("basis")
