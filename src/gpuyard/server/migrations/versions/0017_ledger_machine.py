"""billing: the machine (host number) a workload's meter and its ledger entries belong to, so
that earnings by machine count replicas and serverless workers as well as instances

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06 01:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

TABLES = ("meters", "ledger_entries")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("machine_id", sa.BigInteger(), nullable=True))
    # The meters already open: their workloads still say where they run.
    op.execute(
        "UPDATE meters SET machine_id = (SELECT hosts.pk FROM workloads JOIN hosts"
        " ON hosts.id = workloads.host_id WHERE workloads.id = meters.workload_id)"
    )
    # An instance keeps its host for good: its charges so far are its machine's. A replica's or
    # a worker's that ended before now cannot be placed (their rows are gone).
    op.execute(
        "UPDATE ledger_entries SET machine_id = (SELECT hosts.pk FROM instances JOIN hosts"
        " ON hosts.id = instances.host_id WHERE instances.id = ledger_entries.resource_id)"
        " WHERE kind = 'usage' AND resource_kind IN ('instance', 'instance_disk')"
    )


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("machine_id")
