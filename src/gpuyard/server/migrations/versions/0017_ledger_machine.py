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
KEYS_PER_UPDATE = 500


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("machine_id", sa.BigInteger(), nullable=True))
    # The meters: their workloads say where they run; an instance's meter can outlive its
    # workload row (removed, not yet settled), and the instance row keeps its host for good.
    op.execute(
        "UPDATE meters SET machine_id = (SELECT hosts.pk FROM workloads JOIN hosts"
        " ON hosts.id = workloads.host_id WHERE workloads.id = meters.workload_id)"
    )
    op.execute(
        "UPDATE meters SET machine_id = (SELECT hosts.pk FROM instances JOIN hosts"
        " ON hosts.id = instances.host_id WHERE instances.id = meters.resource_id)"
        " WHERE machine_id IS NULL AND resource_kind IN ('instance', 'instance_disk')"
    )
    # The charges: an instance's are its host's; a replica's or worker's are its meter's,
    # found by their keys (``usage:<workload>:<n>``, ``storage:<workload>:<n>``, n = 1 to the
    # meter's period). Those of replicas and workers whose rows were already gone stay unknown.
    op.execute(
        "UPDATE ledger_entries SET machine_id = (SELECT hosts.pk FROM instances JOIN hosts"
        " ON hosts.id = instances.host_id WHERE instances.id = ledger_entries.resource_id)"
        " WHERE kind = 'usage' AND resource_kind IN ('instance', 'instance_disk')"
    )
    bind = op.get_bind()
    meters = bind.execute(
        sa.text(
            "SELECT workload_id, basis, period, machine_id FROM meters WHERE machine_id IS NOT"
            " NULL AND period > 0 AND resource_kind NOT IN ('instance', 'instance_disk')"
        )
    ).all()
    by_key = sa.text("UPDATE ledger_entries SET machine_id = :machine WHERE key IN :keys")
    by_key = by_key.bindparams(sa.bindparam("keys", expanding=True))
    for workload_id, basis, period, machine in meters:
        prefix = "storage" if basis == "storage" else "usage"
        keys = [f"{prefix}:{workload_id}:{n}" for n in range(1, period + 1)]
        for at in range(0, len(keys), KEYS_PER_UPDATE):
            bind.execute(by_key, {"machine": machine, "keys": keys[at : at + KEYS_PER_UPDATE]})


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("machine_id")
