"""The fleet: join tokens, hosts and their GPUs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from gpuyard.server.orm.base import PK, Base, LeaseColumns


class JoinToken(Base):
    __tablename__ = "join_tokens"

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    used_at: Mapped[datetime | None] = mapped_column(default=None)
    used_by_host: Mapped[str | None] = mapped_column(String(32), default=None)


class Host(LeaseColumns, Base):
    __tablename__ = "hosts"
    __table_args__ = (Index("ix_hosts_status_heartbeat", "status", "last_heartbeat_at"),)

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    credential_hash: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(16))
    cordoned: Mapped[bool] = mapped_column(Boolean, default=False)
    draining: Mapped[bool] = mapped_column(Boolean, default=False)
    verified: Mapped[bool] = mapped_column(Boolean, default=True)
    trusted: Mapped[bool] = mapped_column(Boolean, default=False)  # runs every org unsandboxed
    facts: Mapped[dict[str, Any]]
    address: Mapped[str] = mapped_column(String(255))
    geolocation: Mapped[str | None] = mapped_column(String(64), default=None)
    inet_up_mbps: Mapped[float | None] = mapped_column(default=None)
    inet_down_mbps: Mapped[float | None] = mapped_column(default=None)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    last_heartbeat_at: Mapped[datetime | None] = mapped_column(default=None)
    status_changed_at: Mapped[datetime]


class Gpu(Base):
    __tablename__ = "gpus"
    __table_args__ = (
        UniqueConstraint("host_id", "index", name="uq_gpus_host_index"),
        Index("ix_gpus_host_free", "host_id", "gpu_key", "workload_id"),
        # A workload's GPUs: freeing them, metering what they cost.
        Index("ix_gpus_workload_id", "workload_id"),
    )

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    host_id: Mapped[str] = mapped_column(ForeignKey("hosts.id", ondelete="CASCADE"))
    index: Mapped[int] = mapped_column(Integer)
    uuid: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(128))
    gpu_key: Mapped[str] = mapped_column(String(64))
    vram_mb: Mapped[int | None] = mapped_column(Integer, default=None)
    workload_id: Mapped[str | None] = mapped_column(String(32), default=None)
