"""What hosts run: workloads, and the inference clusters that own replicas of them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from gpuyard.server.orm.base import PK, Base, JsonType, LeaseColumns


class Workload(Base):
    """One thing a host must run (an instance, a cluster replica, a serverless worker): the
    desired state the server writes and the actual state the host's agent reports."""

    __tablename__ = "workloads"
    __table_args__ = (Index("ix_workloads_host", "host_id", "desired"),)

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(32), unique=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"))
    host_id: Mapped[str] = mapped_column(ForeignKey("hosts.id"))
    kind: Mapped[str] = mapped_column(String(16))
    owner_id: Mapped[str] = mapped_column(String(32))
    spec: Mapped[dict[str, Any]]
    spec_hash: Mapped[str] = mapped_column(String(32))
    desired: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), default="pending")
    exit_code: Mapped[int | None] = mapped_column(Integer, default=None)
    host_port: Mapped[int | None] = mapped_column(Integer, default=None)
    message: Mapped[str | None] = mapped_column(Text, default=None)
    log_tail: Mapped[str | None] = mapped_column(Text, default=None)
    # Bytes of output the workload had written where ``log_tail`` ends (None: not counted).
    log_size: Mapped[int | None] = mapped_column(BigInteger, default=None)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    reported_at: Mapped[datetime | None] = mapped_column(
        default=None
    )  # last report that changed it
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    # Deployment replicas only: which spec generation it runs, and what health checks found.
    generation: Mapped[int] = mapped_column(Integer, default=0)
    ready: Mapped[bool] = mapped_column(Boolean, default=False)
    served_models: Mapped[list[str] | None] = mapped_column(JsonType, default=None)
    health_failures: Mapped[int] = mapped_column(Integer, default=0)
    health_checked_at: Mapped[datetime | None] = mapped_column(default=None)
    # Set when the replica leaves routing to drain; ``desired`` turns ``removed`` once it is old.
    drain_started_at: Mapped[datetime | None] = mapped_column(default=None)


class Cluster(LeaseColumns, Base):
    """An inference cluster: ``replicas`` copies of one container on GPUs of one type."""

    __tablename__ = "clusters"
    __table_args__ = (
        Index("ix_clusters_org_created", "org_id", "created_at", "pk"),
        Index("ix_clusters_org_name", "org_id", "name", "deleted_at"),
        Index("ix_clusters_next_run_at", "next_run_at"),
    )

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(32), unique=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(63))
    slug: Mapped[str] = mapped_column(String(80), unique=True)
    gpu_key: Mapped[str] = mapped_column(String(64))
    gpu_name: Mapped[str] = mapped_column(String(128))
    replicas: Mapped[int] = mapped_column(Integer)
    gpus_per_replica: Mapped[int] = mapped_column(Integer, default=1)
    container: Mapped[str] = mapped_column(Text)
    env: Mapped[dict[str, Any]]
    command: Mapped[str | None] = mapped_column(Text, default=None)
    port: Mapped[int] = mapped_column(Integer)
    health_path: Mapped[str] = mapped_column(String(200))
    models: Mapped[list[str]]
    public: Mapped[bool] = mapped_column(Boolean, default=False)
    task: Mapped[str | None] = mapped_column(String(16), default=None)  # core.clusters.TASKS
    status: Mapped[str] = mapped_column(String(16))
    status_reason: Mapped[str | None] = mapped_column(Text, default=None)
    generation: Mapped[int] = mapped_column(Integer, default=1)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    deleted_at: Mapped[datetime | None] = mapped_column(default=None)
    # Set when the cluster opts in to the autoscaler (core/autoscaling/replicas.py): its
    # min_replicas, max_replicas, target_concurrency, inactivity_timeout.
    autoscaling: Mapped[dict[str, Any] | None] = mapped_column(JsonType, default=None)
