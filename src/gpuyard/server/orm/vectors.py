"""The vector store's tables: collections, their items (each with its vector) and the files
whose text became items."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from gpuyard.server.orm.base import PK, Base, LeaseColumns


class VectorCollection(Base):
    """A named set of items of one org, embedded with one model (``dimensions`` is set by the
    first item's vector and never changes while the collection has items)."""

    __tablename__ = "vector_collections"
    __table_args__ = (Index("ix_vector_collections_org_created", "org_id", "created_at", "pk"),)

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    embedding_model: Mapped[str] = mapped_column(String(200))
    dimensions: Mapped[int | None] = mapped_column(Integer, default=None)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class VectorItem(Base):
    """One piece of text, its description and its embedding (little-endian float32, unit
    length). ``pk`` is the item's label in the collection's approximate index."""

    __tablename__ = "vector_items"
    __table_args__ = (Index("ix_vector_items_collection_pk", "collection_id", "pk"),)

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    collection_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("vector_collections.id", ondelete="CASCADE")
    )
    org_id: Mapped[str] = mapped_column(String(32))
    file_id: Mapped[str | None] = mapped_column(String(40), default=None)  # a file's chunk
    content: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text)
    tokens: Mapped[int] = mapped_column(Integer, default=0)
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class VectorFile(LeaseColumns, Base):
    """An uploaded file whose text becomes items in the background (controllers/vector_files.py):
    ``status`` enqueued -> processing -> completed | failed (``status_reason`` says why). The
    upload is kept in ``data`` until then, and dropped once its items are written."""

    __tablename__ = "vector_files"
    __table_args__ = (
        Index("ix_vector_files_collection_created", "collection_id", "created_at", "pk"),
        Index("ix_vector_files_status", "status"),
    )

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    collection_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("vector_collections.id", ondelete="CASCADE")
    )
    org_id: Mapped[str] = mapped_column(String(32))
    key_id: Mapped[str] = mapped_column(String(32))  # whose embedding calls it makes
    filename: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16))  # text, markdown, html, pdf, docx
    size: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    status: Mapped[str] = mapped_column(String(16))
    status_reason: Mapped[str | None] = mapped_column(Text, default=None)
    items: Mapped[int] = mapped_column(Integer, default=0)
    tokens: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
