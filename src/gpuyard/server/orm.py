"""SQLAlchemy tables. Rows only: no rules (services) and no API shapes (schemas).

Every table has an integer surrogate ``pk`` (the Vast dialect speaks integers) and, where clients
see the row, an opaque prefixed string ``id``. Times are aware UTC datetimes on both databases.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

PK = BigInteger().with_variant(Integer(), "sqlite")
JsonType = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC on SQLite and timestamptz on Postgres; always returns aware UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JsonType, list[str]: JsonType}


class LeaseColumns:
    """Columns a reconciler uses to claim a row: see controllers/base.py."""

    lease_token: Mapped[str | None] = mapped_column(String(40), default=None)
    lease_owner: Mapped[str | None] = mapped_column(String(80), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)


class Org(Base):
    __tablename__ = "orgs"

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="active")
    status_reason: Mapped[str | None] = mapped_column(Text, default=None)
    is_operator: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class ApiKey(LeaseColumns, Base):
    __tablename__ = "api_keys"
    __table_args__ = (
        Index("ix_api_keys_org_created", "org_id", "created_at", "pk"),
        Index("ix_api_keys_expiry_due", "expires_at", "expired_at"),
    )

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(32), unique=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(16))
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str]]
    created_at: Mapped[datetime]
    created_by: Mapped[str | None] = mapped_column(String(32), default=None)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    expired_at: Mapped[datetime | None] = mapped_column(default=None)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    rpm_limit: Mapped[int | None] = mapped_column(Integer, default=None)
    tpm_limit: Mapped[int | None] = mapped_column(Integer, default=None)


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_org_created", "org_id", "created_at", "pk"),
        Index("ix_events_org_type_created", "org_id", "type", "created_at"),
    )

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(32), unique=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(64))
    subject_id: Mapped[str | None] = mapped_column(String(32), default=None)
    data: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]


class IdempotencyRecord(Base):
    __tablename__ = "idempotency_keys"
    __table_args__ = (
        UniqueConstraint("scope", "key", name="uq_idempotency_keys_scope_key"),
        Index("ix_idempotency_keys_expires_at", "expires_at"),
    )

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    scope: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(255))
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(Text)
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    response_headers: Mapped[dict[str, Any] | None] = mapped_column(JsonType, default=None)
    response_body: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]


class SshKey(Base):
    __tablename__ = "ssh_keys"
    __table_args__ = (
        Index("ix_ssh_keys_org_created", "org_id", "created_at", "pk"),
        UniqueConstraint("org_id", "fingerprint", name="uq_ssh_keys_org_fingerprint"),
    )

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(32), unique=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    public_key: Mapped[str] = mapped_column(Text)
    fingerprint: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime]


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
    )

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    host_id: Mapped[str] = mapped_column(ForeignKey("hosts.id", ondelete="CASCADE"))
    index: Mapped[int] = mapped_column(Integer)
    uuid: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(128))
    gpu_key: Mapped[str] = mapped_column(String(64))
    vram_mb: Mapped[int | None] = mapped_column(Integer, default=None)
    workload_id: Mapped[str | None] = mapped_column(String(32), default=None)


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
    status: Mapped[str] = mapped_column(String(16))
    status_reason: Mapped[str | None] = mapped_column(Text, default=None)
    generation: Mapped[int] = mapped_column(Integer, default=1)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    deleted_at: Mapped[datetime | None] = mapped_column(default=None)


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
