"""Clusters as the native API and the VectorLay dialect show them (the seed's fields first)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal, get_args

from pydantic import BaseModel, Field, StrictBool, StrictFloat, StrictInt, StrictStr

from gpuyard.core.autoscaling.replicas import ReplicaAutoscaling
from gpuyard.core.clusters import TASKS, Cluster
from gpuyard.server.schemas.common import RequestBody, reject_null

Task = Literal["chat", "completions", "embeddings", "speech"]  # core.clusters.TASKS
TASK_DOC = (
    "What its models do: chat (listed by GET /v1/chat/models), completions, embeddings, "
    "speech; left out: not declared (served all the same, listed in /v1/models only)"
)


class Autoscaling(RequestBody):
    """The replica count follows the load (requests in flight) between the two bounds."""

    min_replicas: StrictInt = Field(default=1, description="0 scales to zero when idle")
    max_replicas: StrictInt = Field(description="At most 64")
    target_concurrency: StrictFloat | StrictInt = Field(
        default=4.0, description="Requests in flight one replica is meant to serve"
    )
    inactivity_timeout: StrictFloat | StrictInt | None = Field(
        default=300.0,
        description="With min_replicas 0: idle seconds before the last replica goes (null: never)",
    )

    def settings(self) -> ReplicaAutoscaling:
        return ReplicaAutoscaling(
            min_replicas=self.min_replicas,
            max_replicas=self.max_replicas,
            target_concurrency=float(self.target_concurrency),
            inactivity_timeout=(
                None if self.inactivity_timeout is None else float(self.inactivity_timeout)
            ),
        )

    @classmethod
    def of(cls, a: ReplicaAutoscaling) -> Autoscaling:
        return cls(
            min_replicas=a.min_replicas,
            max_replicas=a.max_replicas,
            target_concurrency=a.target_concurrency,
            inactivity_timeout=a.inactivity_timeout,
        )


class ClusterCreate(RequestBody):
    name: StrictStr = Field(min_length=1, max_length=63, description="Unique in your org")
    gpu_type: StrictStr = Field(min_length=1, max_length=128, description="e.g. rtx-4090")
    replicas: StrictInt = Field(default=1, ge=0, le=64)
    container: StrictStr = Field(min_length=1, max_length=500, description="Image to run")
    env: dict[str, StrictStr] = Field(default_factory=dict, max_length=256)
    gpus_per_replica: StrictInt = Field(default=1, ge=1, le=64)
    port: StrictInt = Field(default=8000, ge=1, le=65535, description="Port the container serves")
    command: StrictStr | None = Field(default=None, max_length=65536)
    health_path: StrictStr = Field(default="/health", pattern=r"^/", max_length=200)
    models: list[StrictStr] = Field(
        default_factory=list,
        max_length=64,
        description="Models it serves; empty: discovered from each ready replica's /v1/models",
    )
    public: StrictBool = Field(default=False, description="Operator only: serve every org")
    autoscaling: Autoscaling | None = Field(
        default=None, description="Set: the replica count follows the load within its bounds"
    )
    task: Task | None = Field(default=None, description=TASK_DOC)


class ClusterUpdate(RequestBody):
    replicas: StrictInt | None = Field(default=None, ge=0, le=64)
    container: StrictStr | None = Field(default=None, min_length=1, max_length=500)
    env: dict[str, StrictStr] | None = Field(default=None, max_length=256)
    command: StrictStr | None = Field(default=None, max_length=65536)
    port: StrictInt | None = Field(default=None, ge=1, le=65535)
    health_path: StrictStr | None = Field(default=None, pattern=r"^/", max_length=200)
    models: list[StrictStr] | None = Field(default=None, max_length=64)
    autoscaling: Autoscaling | None = Field(default=None, description="null: turned off")
    task: Task | None = Field(default=None, description=TASK_DOC + " (null: no longer declared)")

    _no_null = reject_null("replicas", "container", "env", "port", "health_path", "models")


class ReplicaOut(BaseModel):
    id: str
    host_id: str
    state: str
    ready: bool
    generation: int
    draining: bool = Field(
        description="leaving: out of routing, still finishing the requests it was sent"
    )


class ClusterOut(BaseModel):
    id: str
    name: str
    status: str = Field(description="provisioning, healthy, degraded, failed, stopped, deleting")
    gpu_type: str
    replicas: int
    endpoint: str
    created_at: datetime
    status_reason: str | None
    ready_replicas: int
    gpus_per_replica: int
    container: str
    env: dict[str, str]
    command: str | None
    port: int
    health_path: str
    models: list[str]
    task: str | None
    replica_details: list[ReplicaOut]
    updated_at: datetime
    autoscaling: Autoscaling | None = Field(
        description="Set: `replicas` is what the autoscaler last chose, within these bounds"
    )

    @classmethod
    def of(cls, c: Cluster, endpoint: str) -> ClusterOut:
        return cls(
            id=c.id,
            name=c.name,
            status=c.status.value,
            gpu_type=c.gpu_type,
            replicas=c.replicas,
            endpoint=endpoint,
            created_at=c.created_at,
            status_reason=c.status_reason,
            ready_replicas=c.ready_replicas,
            gpus_per_replica=c.gpus_per_replica,
            container=c.container,
            env=c.env,
            command=c.command,
            port=c.port,
            health_path=c.health_path,
            models=list(c.models),
            task=c.task,
            replica_details=[
                ReplicaOut(
                    id=r.id,
                    host_id=r.host_id,
                    state=r.state,
                    ready=r.ready,
                    generation=r.generation,
                    draining=r.draining,
                )
                for r in c.replica_views
            ],
            updated_at=c.updated_at,
            autoscaling=Autoscaling.of(c.autoscaling) if c.autoscaling else None,
        )


assert get_args(Task) == TASKS  # one list of tasks
