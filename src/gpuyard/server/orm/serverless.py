"""Serverless: templates, endpoints, their workergroups, the workers those run, and the requests
routed to them (docs/serverless.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from gpuyard.server.orm.base import PK, Base, LeaseColumns


class Template(Base):
    """What a workergroup runs: an image, its docker options and an onstart script."""

    __tablename__ = "templates"
    __table_args__ = (
        Index("ix_templates_org_created", "org_id", "created_at", "pk"),
        Index("ix_templates_hash", "hash_id"),
    )

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(32), unique=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"))
    hash_id: Mapped[str] = mapped_column(String(32))
    name: Mapped[str | None] = mapped_column(String(200), default=None)
    image: Mapped[str | None] = mapped_column(Text, default=None)
    tag: Mapped[str | None] = mapped_column(String(128), default=None)
    env: Mapped[str | None] = mapped_column(Text, default=None)  # the docker options string
    onstart: Mapped[str | None] = mapped_column(Text, default=None)
    runtype: Mapped[str | None] = mapped_column(String(32), default=None)
    extra_filters: Mapped[dict[str, Any]]
    disk_space: Mapped[float | None] = mapped_column(Float, default=None)
    readme: Mapped[str | None] = mapped_column(Text, default=None)
    description: Mapped[str | None] = mapped_column(Text, default=None)
    private: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]


class Endpoint(LeaseColumns, Base):
    """A serverless endpoint: the autoscaling knobs and the key requests are routed with."""

    __tablename__ = "endpoints"
    __table_args__ = (
        Index("ix_endpoints_org_created", "org_id", "created_at", "pk"),
        Index("ix_endpoints_org_name", "org_id", "name", "deleted_at"),
        Index("ix_endpoints_next_run_at", "next_run_at"),
    )

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(32), unique=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    api_key: Mapped[str] = mapped_column(String(64), unique=True)
    min_load: Mapped[float] = mapped_column(Float)
    min_cold_load: Mapped[float] = mapped_column(Float)
    target_util: Mapped[float] = mapped_column(Float)
    cold_mult: Mapped[float] = mapped_column(Float)
    cold_workers: Mapped[int] = mapped_column(Integer)
    max_workers: Mapped[int] = mapped_column(Integer)
    max_queue_time: Mapped[float] = mapped_column(Float)
    target_queue_time: Mapped[float] = mapped_column(Float)
    inactivity_timeout: Mapped[float | None] = mapped_column(Float, default=None)
    state: Mapped[str] = mapped_column(String(16))
    last_request_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    deleted_at: Mapped[datetime | None] = mapped_column(default=None)


class Workergroup(Base):
    """A pool of workers of one endpoint, all running one launch (a template or launch args) on
    the GPUs its search parameters select."""

    __tablename__ = "workergroups"
    __table_args__ = (
        Index("ix_workergroups_org_created", "org_id", "created_at", "pk"),
        Index("ix_workergroups_endpoint", "endpoint_id", "deleted_at"),
    )

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(32), unique=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"))
    endpoint_id: Mapped[str] = mapped_column(String(32))
    template_id: Mapped[str | None] = mapped_column(String(32), default=None)
    template_hash: Mapped[str | None] = mapped_column(String(32), default=None)
    search_params: Mapped[str] = mapped_column(Text)
    launch_args: Mapped[str | None] = mapped_column(Text, default=None)
    gpu_ram: Mapped[float] = mapped_column(Float)
    test_workers: Mapped[int] = mapped_column(Integer)
    # What a worker runs, resolved from the template and launch args when they are set.
    image: Mapped[str | None] = mapped_column(Text, default=None)
    command: Mapped[str | None] = mapped_column(Text, default=None)
    env: Mapped[dict[str, Any]]
    port: Mapped[int | None] = mapped_column(Integer, default=None)
    gpu_key: Mapped[str | None] = mapped_column(String(64), default=None)
    num_gpus: Mapped[int] = mapped_column(Integer, default=1)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    status_reason: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    deleted_at: Mapped[datetime | None] = mapped_column(default=None)


class ServerlessWorker(Base):
    """One worker of a workergroup: its host workload and what the worker last reported. The
    integer ``pk`` is the worker's id on the wire (``CONTAINER_ID``)."""

    __tablename__ = "serverless_workers"
    __table_args__ = (
        Index("ix_serverless_workers_endpoint", "endpoint_id", "status"),
        {"sqlite_autoincrement": True},  # a number is never given to a second worker
    )

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"))
    endpoint_id: Mapped[str] = mapped_column(String(32))
    workergroup_id: Mapped[str] = mapped_column(String(32))
    workload_id: Mapped[str | None] = mapped_column(String(32), default=None)
    host_id: Mapped[str | None] = mapped_column(String(32), default=None)
    status: Mapped[str] = mapped_column(String(16))
    status_at: Mapped[datetime]  # when it entered ``status``
    mtoken: Mapped[str] = mapped_column(String(64))
    url: Mapped[str | None] = mapped_column(Text, default=None)
    cur_load: Mapped[float] = mapped_column(Float, default=0.0)
    new_load: Mapped[float] = mapped_column(Float, default=0.0)
    rej_load: Mapped[float] = mapped_column(Float, default=0.0)
    cur_perf: Mapped[float] = mapped_column(Float, default=0.0)
    max_perf: Mapped[float] = mapped_column(Float, default=0.0)
    reqs_working: Mapped[int] = mapped_column(Integer, default=0)
    loadtime: Mapped[float | None] = mapped_column(Float, default=None)
    error_msg: Mapped[str | None] = mapped_column(Text, default=None)
    loaded_at: Mapped[datetime | None] = mapped_column(default=None)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    reported_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class RoutedRequest(Base):
    """A request routed (or waiting to be) to an endpoint's worker; its ``pk`` is the
    ``request_idx`` the client polls with and the worker reports done."""

    __tablename__ = "routed_requests"
    __table_args__ = (
        Index("ix_routed_requests_endpoint", "endpoint_id", "created_at"),
        Index("ix_routed_requests_worker", "worker_id", "done_at"),
        {"sqlite_autoincrement": True},  # a request_idx is never reused
    )

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    endpoint_id: Mapped[str] = mapped_column(String(32))
    worker_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    cost: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16))  # waiting, routed, done, failed
    created_at: Mapped[datetime]
    routed_at: Mapped[datetime | None] = mapped_column(default=None)
    done_at: Mapped[datetime | None] = mapped_column(default=None)


class SigningKey(Base):
    """A private key the server signs with, shared by every replica: ``route`` signs the
    grants ``/route/`` hands out (its public half is ``GET /pubkey/``)."""

    __tablename__ = "signing_keys"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    private_pem: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
