"""Inference clusters: ``replicas`` copies of one container on GPUs of one type, and how their
status follows from their replicas.

Status::

    provisioning  replicas are being placed or started, none has failed for good
    healthy       every wanted replica is ready
    degraded      some, not all, are ready
    failed        none is ready and they cannot be (no capacity, or replicas keep failing);
                  ``status_reason`` says why, with the last log lines
    stopped       zero replicas wanted
    deleting      deleted, replicas draining; the cluster disappears once none is left

A replica that goes away (scale down, rolling update, host drained by the operator, cluster
deleted) first *drains*: it leaves routing (``ready`` is false) but keeps running for
``DEFAULT_DRAIN_SECONDS`` (``GPUYARD_REPLICA_DRAIN_SECONDS``) so requests already sent to it
finish; only then is the host told to remove it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from gpuyard.core.autoscaling.replicas import ReplicaAutoscaling

MAX_FAILURES = 3
"""Replicas of one spec that may fail before the cluster is ``failed`` (until it is changed)."""

TASKS = ("chat", "completions", "embeddings", "speech")
"""What a cluster's models do, as its owner declares it (``task``): which of Vultr's model lists
(``GET /v1/chat/models``) they are in. Undeclared, a model is served all the same and listed in
``/v1/models`` only: nothing an OpenAI-compatible server answers says what a model does."""

DEFAULT_DRAIN_SECONDS = 10.0
"""How long a replica leaving a cluster keeps running, out of routing, before it is removed."""


class ClusterStatus(StrEnum):
    PROVISIONING = "provisioning"
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    FAILED = "failed"
    STOPPED = "stopped"
    DELETING = "deleting"


@dataclass(frozen=True, slots=True)
class ReplicaView:
    id: str
    host_id: str
    state: str
    ready: bool
    generation: int
    address: str | None
    host_port: int | None
    models: tuple[str, ...]
    draining: bool = False  # out of routing, still finishing what it was sent


def cluster_status(
    *, wanted: int, ready: int, failures: int, unplaceable: bool, deleting: bool
) -> ClusterStatus:
    if deleting:
        return ClusterStatus.DELETING
    if wanted == 0:
        return ClusterStatus.STOPPED
    if ready >= wanted:
        return ClusterStatus.HEALTHY
    if ready > 0:
        return ClusterStatus.DEGRADED
    if failures >= MAX_FAILURES or unplaceable:
        return ClusterStatus.FAILED
    return ClusterStatus.PROVISIONING


@dataclass(frozen=True, slots=True)
class Cluster:
    id: str
    org_id: str
    name: str
    slug: str
    gpu_type: str  # as VectorLay writes it: rtx-4090
    gpu_name: str
    replicas: int
    gpus_per_replica: int
    container: str
    env: dict[str, str]
    command: str | None
    port: int
    health_path: str
    models: tuple[str, ...]  # explicit, or discovered from ready replicas
    public: bool
    status: ClusterStatus
    status_reason: str | None
    ready_replicas: int
    created_at: datetime
    updated_at: datetime
    replica_views: tuple[ReplicaView, ...] = ()
    autoscaling: ReplicaAutoscaling | None = None  # None: ``replicas`` is fixed
    task: str | None = None  # one of TASKS, or not declared
