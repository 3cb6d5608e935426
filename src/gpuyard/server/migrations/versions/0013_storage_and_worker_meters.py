"""billing: storage meters beside compute meters; per-model token prices and token meters; the
prices in force recorded with a charge; top-ups through a payment provider

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05 16:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import gpuyard.server.orm

revision = "0013"
down_revision = "0012"
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
        batch.add_column(sa.Column("model", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("input_tokens", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("output_tokens", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("cents_per_million_input", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("cents_per_million_output", sa.Integer(), nullable=True))
    op.create_table(
        "model_prices",
        sa.Column(
            "pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("cents_per_million_input", sa.Integer(), nullable=False),
        sa.Column("cents_per_million_output", sa.Integer(), nullable=False),
        sa.Column("updated_at", gpuyard.server.orm.base.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_model_prices")),
        sa.UniqueConstraint("model", name=op.f("uq_model_prices_model")),
    )
    op.create_table(
        "token_meters",
        sa.Column(
            "pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("org_id", sa.String(length=32), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("used_microcents", sa.BigInteger(), nullable=False),
        sa.Column("charged_cents", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", gpuyard.server.orm.base.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"], ["orgs.id"], name=op.f("fk_token_meters_org_id_orgs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_token_meters")),
        sa.UniqueConstraint("org_id", "model", name="uq_token_meters_org_model"),
    )

    op.create_table(
        "top_ups",
        sa.Column(
            "pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("org_id", sa.String(length=32), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=8), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("provider_ref", sa.String(length=255), nullable=True),
        sa.Column("client_secret", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("credited_at", gpuyard.server.orm.base.UTCDateTime(), nullable=True),
        sa.Column("created_at", gpuyard.server.orm.base.UTCDateTime(), nullable=False),
        sa.Column("updated_at", gpuyard.server.orm.base.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"], ["orgs.id"], name=op.f("fk_top_ups_org_id_orgs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_top_ups")),
        sa.UniqueConstraint("id", name=op.f("uq_top_ups_id")),
        sa.UniqueConstraint("provider", "provider_ref", name="uq_top_ups_provider_ref"),
    )
    op.create_index("ix_top_ups_org_created", "top_ups", ["org_id", "created_at", "pk"])


def downgrade() -> None:
    op.drop_index("ix_top_ups_org_created", table_name="top_ups")
    op.drop_table("top_ups")
    op.drop_table("token_meters")
    op.drop_table("model_prices")
    with op.batch_alter_table("ledger_entries") as batch:
        batch.drop_column("cents_per_million_output")
        batch.drop_column("cents_per_million_input")
        batch.drop_column("output_tokens")
        batch.drop_column("input_tokens")
        batch.drop_column("model")
        batch.drop_column("cents_per_gb_month")
        batch.drop_column("disk_gb")
    op.execute("DELETE FROM meters WHERE basis <> 'compute'")
    with op.batch_alter_table("meters") as batch:
        batch.drop_constraint("uq_meters_workload_basis", type_="unique")
        batch.create_unique_constraint("uq_meters_workload_id", ["workload_id"])
        batch.drop_column("disk_gb")
        batch.drop_column("rate_seconds")
        batch.drop_column("basis")
