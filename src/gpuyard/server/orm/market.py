"""The marketplace: GPU prices, offers and rented instances."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from gpuyard.server.orm.base import PK, Base


class GpuPrice(Base):
    __tablename__ = "gpu_prices"

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    gpu_key: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(128))
    cents_per_gpu_hour: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime]


class Offer(Base):
    """A rentable bundle: ``num_gpus`` free GPUs of one type on one host. Derived data, rebuilt
    for a host whenever its GPUs, status or prices change (services/offers.py)."""

    __tablename__ = "offers"
    __table_args__ = (
        Index("ix_offers_gpu_key_dph", "gpu_key", "dph_total"),
        Index("ix_offers_dph", "dph_total"),
        Index("ix_offers_host", "host_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    host_id: Mapped[str] = mapped_column(ForeignKey("hosts.id", ondelete="CASCADE"))
    machine_id: Mapped[int] = mapped_column(Integer)
    gpu_key: Mapped[str] = mapped_column(String(64))
    gpu_name: Mapped[str] = mapped_column(String(128))
    num_gpus: Mapped[int] = mapped_column(Integer)
    gpu_ram: Mapped[int | None] = mapped_column(Integer, default=None)
    gpu_total_ram: Mapped[int | None] = mapped_column(Integer, default=None)
    cpu_cores: Mapped[float | None] = mapped_column(default=None)
    cpu_ram: Mapped[int | None] = mapped_column(Integer, default=None)
    disk_space: Mapped[float | None] = mapped_column(default=None)
    cents_per_hour: Mapped[int] = mapped_column(Integer)
    dph_total: Mapped[float] = mapped_column()
    reliability: Mapped[float | None] = mapped_column(default=None)
    inet_up: Mapped[float | None] = mapped_column(default=None)
    inet_down: Mapped[float | None] = mapped_column(default=None)
    geolocation: Mapped[str | None] = mapped_column(String(64), default=None)
    cuda_max_good: Mapped[float | None] = mapped_column(default=None)
    compute_cap: Mapped[int | None] = mapped_column(Integer, default=None)
    driver_version: Mapped[str | None] = mapped_column(String(64), default=None)
    verified: Mapped[bool] = mapped_column(Boolean)
    rentable: Mapped[bool] = mapped_column(Boolean)
    rented: Mapped[bool] = mapped_column(Boolean)
    direct_port_count: Mapped[int | None] = mapped_column(Integer, default=None)
    dlperf: Mapped[float | None] = mapped_column(default=None)
    score: Mapped[float | None] = mapped_column(default=None)
    public_ipaddr: Mapped[str | None] = mapped_column(String(255), default=None)
    open_to_all: Mapped[bool] = mapped_column(Boolean, default=False)  # else the operator's only


class Instance(Base):
    __tablename__ = "instances"
    __table_args__ = (Index("ix_instances_org_created", "org_id", "created_at", "pk"),)

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(32), unique=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"))
    host_id: Mapped[str] = mapped_column(ForeignKey("hosts.id"))
    workload_id: Mapped[str] = mapped_column(String(32), unique=True)
    offer_id: Mapped[int] = mapped_column(BigInteger)
    gpu_name: Mapped[str] = mapped_column(String(128))
    num_gpus: Mapped[int] = mapped_column(Integer)
    cents_per_hour: Mapped[int] = mapped_column(Integer)
    image: Mapped[str | None] = mapped_column(Text, default=None)
    label: Mapped[str | None] = mapped_column(String(200), default=None)
    disk_gb: Mapped[float | None] = mapped_column(default=None)
    runtype: Mapped[str | None] = mapped_column(String(32), default=None)
    intended_status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    destroyed_at: Mapped[datetime | None] = mapped_column(default=None)
