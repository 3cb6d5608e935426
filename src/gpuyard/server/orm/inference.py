"""The inference gateway's tables: request logs, rate-limit windows and kept chat completions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from gpuyard.server.orm.base import PK, Base


class RequestLog(Base):
    """One row per inference request, written off the request path (gateway/logs.py)."""

    __tablename__ = "request_logs"
    __table_args__ = (Index("ix_request_logs_org_created", "org_id", "created_at", "pk"),)

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    org_id: Mapped[str] = mapped_column(String(32))
    key_id: Mapped[str] = mapped_column(String(32))
    endpoint: Mapped[str] = mapped_column(String(64))
    model: Mapped[str | None] = mapped_column(String(200), default=None)
    cluster_id: Mapped[str | None] = mapped_column(String(32), default=None)
    replica_id: Mapped[str | None] = mapped_column(String(32), default=None)
    status: Mapped[int] = mapped_column(Integer)
    stream: Mapped[bool] = mapped_column(Boolean, default=False)
    prompt_tokens: Mapped[int | None] = mapped_column(Integer, default=None)
    completion_tokens: Mapped[int | None] = mapped_column(Integer, default=None)
    latency_ms: Mapped[float] = mapped_column()
    error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime]


class RateWindow(Base):
    """Requests and tokens one API key used in one minute, shared by every server replica."""

    __tablename__ = "rate_windows"
    __table_args__ = (
        UniqueConstraint("key_id", "window_start", name="uq_rate_windows_key_window"),
        Index("ix_rate_windows_window_start", "window_start"),
    )

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    key_id: Mapped[str] = mapped_column(String(32))
    window_start: Mapped[datetime]
    requests: Mapped[int] = mapped_column(Integer, default=0)
    tokens: Mapped[int] = mapped_column(Integer, default=0)


class StoredCompletion(Base):
    """A chat completion as its caller received it (a stream put together), kept per org for
    ``GET /v1/chat/completions/{id}`` and its rating; ``id`` is the model server's."""

    __tablename__ = "completions"
    __table_args__ = (
        Index("ix_completions_org_id", "org_id", "id"),
        Index("ix_completions_created", "created_at"),
    )

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(200))
    org_id: Mapped[str] = mapped_column(String(32))
    key_id: Mapped[str] = mapped_column(String(32))
    model: Mapped[str | None] = mapped_column(String(200), default=None)
    body: Mapped[dict[str, Any]]
    vote: Mapped[str | None] = mapped_column(String(8), default=None)
    voted_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime]
