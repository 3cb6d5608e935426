"""billing: unsettled token holds kept for the hold sweeper; text to speech priced and charged
by the character; GPUs found by their workload (metering, freeing)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05 18:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import gpuyard.server.orm

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("model_prices") as batch:
        batch.add_column(
            sa.Column(
                "cents_per_million_characters", sa.Integer(), nullable=False, server_default="0"
            )
        )
    with op.batch_alter_table("ledger_entries") as batch:
        batch.add_column(sa.Column("characters", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("cents_per_million_characters", sa.Integer(), nullable=True))
    op.create_table(
        "token_holds",
        sa.Column(
            "pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("org_id", sa.String(length=32), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("held_cents", sa.BigInteger(), nullable=False),
        sa.Column("characters", sa.BigInteger(), nullable=False),
        sa.Column("created_at", gpuyard.server.orm.base.UTCDateTime(), nullable=False),
        sa.Column("next_run_at", gpuyard.server.orm.base.UTCDateTime(), nullable=True),
        sa.Column("lease_token", sa.String(length=40), nullable=True),
        sa.Column("lease_owner", sa.String(length=80), nullable=True),
        sa.Column("lease_expires_at", gpuyard.server.orm.base.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["org_id"], ["orgs.id"], name=op.f("fk_token_holds_org_id_orgs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_token_holds")),
        sa.UniqueConstraint("request_id", name=op.f("uq_token_holds_request_id")),
    )
    op.create_index("ix_token_holds_next_run_at", "token_holds", ["next_run_at"])
    op.create_index("ix_gpus_workload_id", "gpus", ["workload_id"])


def downgrade() -> None:
    op.drop_index("ix_gpus_workload_id", table_name="gpus")
    op.drop_index("ix_token_holds_next_run_at", table_name="token_holds")
    op.drop_table("token_holds")
    with op.batch_alter_table("ledger_entries") as batch:
        batch.drop_column("cents_per_million_characters")
        batch.drop_column("characters")
    with op.batch_alter_table("model_prices") as batch:
        batch.drop_column("cents_per_million_characters")
