"""vector store: collections, items with their vectors, and files; kept chat completions

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05 15:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import gpuyard.server.orm

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "vector_collections",
        sa.Column("pk", PK, autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("org_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("embedding_model", sa.String(length=200), nullable=False),
        sa.Column("dimensions", sa.Integer(), nullable=True),
        sa.Column("created_at", gpuyard.server.orm.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", gpuyard.server.orm.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["orgs.id"],
            name=op.f("fk_vector_collections_org_id_orgs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_vector_collections")),
        sa.UniqueConstraint("id", name=op.f("uq_vector_collections_id")),
    )
    with op.batch_alter_table("vector_collections", schema=None) as batch_op:
        batch_op.create_index(
            "ix_vector_collections_org_created", ["org_id", "created_at", "pk"], unique=False
        )
    op.create_table(
        "vector_items",
        sa.Column("pk", PK, autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("collection_id", sa.String(length=40), nullable=False),
        sa.Column("org_id", sa.String(length=32), nullable=False),
        sa.Column("file_id", sa.String(length=40), nullable=True),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("tokens", sa.Integer(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", gpuyard.server.orm.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", gpuyard.server.orm.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["collection_id"],
            ["vector_collections.id"],
            name=op.f("fk_vector_items_collection_id_vector_collections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_vector_items")),
        sa.UniqueConstraint("id", name=op.f("uq_vector_items_id")),
    )
    with op.batch_alter_table("vector_items", schema=None) as batch_op:
        batch_op.create_index(
            "ix_vector_items_collection_pk", ["collection_id", "pk"], unique=False
        )

    op.create_table(
        "vector_files",
        sa.Column("pk", PK, autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("collection_id", sa.String(length=40), nullable=False),
        sa.Column("org_id", sa.String(length=32), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("items", sa.Integer(), nullable=False),
        sa.Column("tokens", sa.Integer(), nullable=False),
        sa.Column("created_at", gpuyard.server.orm.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", gpuyard.server.orm.UTCDateTime(timezone=True), nullable=False),
        sa.Column("next_run_at", gpuyard.server.orm.UTCDateTime(timezone=True), nullable=True),
        sa.Column("lease_token", sa.String(length=40), nullable=True),
        sa.Column("lease_owner", sa.String(length=80), nullable=True),
        sa.Column("lease_expires_at", gpuyard.server.orm.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["collection_id"],
            ["vector_collections.id"],
            name=op.f("fk_vector_files_collection_id_vector_collections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_vector_files")),
        sa.UniqueConstraint("id", name=op.f("uq_vector_files_id")),
    )
    with op.batch_alter_table("vector_files", schema=None) as batch_op:
        batch_op.create_index(
            "ix_vector_files_collection_created", ["collection_id", "created_at", "pk"]
        )
        batch_op.create_index("ix_vector_files_status", ["status"])

    op.create_table(
        "completions",
        sa.Column("pk", PK, autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=200), nullable=False),
        sa.Column("org_id", sa.String(length=32), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=True),
        sa.Column(
            "body",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("vote", sa.String(length=8), nullable=True),
        sa.Column("voted_at", gpuyard.server.orm.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", gpuyard.server.orm.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_completions")),
    )
    with op.batch_alter_table("completions", schema=None) as batch_op:
        batch_op.create_index("ix_completions_org_id", ["org_id", "id"])
        batch_op.create_index("ix_completions_created", ["created_at"])


def downgrade() -> None:
    with op.batch_alter_table("completions", schema=None) as batch_op:
        batch_op.drop_index("ix_completions_created")
        batch_op.drop_index("ix_completions_org_id")
    op.drop_table("completions")
    with op.batch_alter_table("vector_files", schema=None) as batch_op:
        batch_op.drop_index("ix_vector_files_status")
        batch_op.drop_index("ix_vector_files_collection_created")
    op.drop_table("vector_files")
    with op.batch_alter_table("vector_items", schema=None) as batch_op:
        batch_op.drop_index("ix_vector_items_collection_pk")
    op.drop_table("vector_items")
    with op.batch_alter_table("vector_collections", schema=None) as batch_op:
        batch_op.drop_index("ix_vector_collections_org_created")
    op.drop_table("vector_collections")
