"""clusters: the task a deployment's models do (chat, completions, embeddings, speech), as its
owner declares it; the chat model list reads it

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05 18:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("clusters") as batch:
        batch.add_column(sa.Column("task", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("clusters") as batch:
        batch.drop_column("task")
