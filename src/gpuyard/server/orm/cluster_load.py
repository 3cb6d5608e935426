"""What the gateways measure of an autoscaled cluster's load (services/cluster_load.py)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from gpuyard.server.orm.base import PK, Base


class ClusterLoadSample(Base):
    """Request-seconds the gateways served to one cluster in one sampling period (5 s): over
    the period's length, the cluster's mean number of requests in flight. Every gateway adds
    its share to the same row."""

    __tablename__ = "cluster_load_samples"
    __table_args__ = (
        UniqueConstraint("cluster_id", "period_start", name="uq_cluster_load_samples_period"),
        Index("ix_cluster_load_samples_period_start", "period_start"),
    )

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    cluster_id: Mapped[str] = mapped_column(String(32))
    period_start: Mapped[datetime]
    busy_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    refused: Mapped[int] = mapped_column(Integer, default=0)  # no ready replica to take it


class ReplicaInFlight(Base):
    """Requests one gateway (``reporter``) has in flight on one replica, as it last said."""

    __tablename__ = "replica_in_flight"
    __table_args__ = (
        UniqueConstraint("replica_id", "reporter", name="uq_replica_in_flight_reporter"),
        Index("ix_replica_in_flight_cluster", "cluster_id"),
    )

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    replica_id: Mapped[str] = mapped_column(String(32))
    reporter: Mapped[str] = mapped_column(String(40))
    cluster_id: Mapped[str] = mapped_column(String(32))
    in_flight: Mapped[int] = mapped_column(Integer, default=0)
    reported_at: Mapped[datetime]
