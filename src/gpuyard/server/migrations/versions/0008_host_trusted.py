"""host trusted, offer open_to_all: which orgs a host that cannot isolate may run

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 12:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("trusted", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    # Offers are derived; existing ones stay the operator's until their host's next refresh
    # (an agent that reports its isolation changes its facts, which refreshes them).
    with op.batch_alter_table("offers", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("open_to_all", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("offers", schema=None) as batch_op:
        batch_op.drop_column("open_to_all")
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.drop_column("trusted")
