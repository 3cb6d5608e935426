"""What an agent must run (``WorkloadSpec``) and what it reports back (``WorkloadStatus``).

One workload is one thing a host runs for the control plane: a rented instance, a cluster replica
or a serverless worker. The server writes specs; the agent reconciles them through a runtime and
reports statuses. ``spec_hash()`` lets both sides tell, without comparing field by field, whether
what runs is what was asked for.

State machine of ``WorkloadState`` as the agent reports it::

    pending ──► starting ──► running ──► exited    (the command ended on its own; exit_code set)
                   │            │
                   │            └──────► stopped   (ended because it was asked to stop)
                   └───────────────────► failed    (could not be started at all; message says why)

    unknown: the agent cannot tell (its runtime lost track of it).
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator

_WORKLOAD_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class WorkloadKind(StrEnum):
    INSTANCE = "instance"
    REPLICA = "replica"
    WORKER = "worker"


class WorkloadState(StrEnum):
    PENDING = "pending"
    STARTING = "starting"
    RUNNING = "running"
    EXITED = "exited"
    FAILED = "failed"
    STOPPED = "stopped"
    UNKNOWN = "unknown"

    @property
    def is_active(self) -> bool:
        """True while the workload occupies its host (it may still use GPUs and its port)."""
        return self in (WorkloadState.PENDING, WorkloadState.STARTING, WorkloadState.RUNNING)

    @property
    def is_final(self) -> bool:
        """True once the workload has ended and will not change without a new start."""
        return self in (WorkloadState.EXITED, WorkloadState.FAILED, WorkloadState.STOPPED)


SERVER_RELAY_LABEL = "gpuyard.server_relay"
"""A spec label whose value names an environment variable: a runtime whose workloads cannot
reach the server (the process runtime's sandbox) relays a loopback port to it and sets that
variable to its URL (agent/runtimes/server_relay.py)."""


class WorkloadSpec(BaseModel):
    """The desired workload, as the server hands it to an agent."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(description="workload id, e.g. wl_…; also names files and containers")
    kind: WorkloadKind = WorkloadKind.INSTANCE
    image: str | None = None
    command: str | None = Field(default=None, description="a shell string, run with /bin/sh -c")
    args: list[str] = Field(default_factory=list)
    onstart: str | None = Field(default=None, description="a shell script run first")
    env: dict[str, str] = Field(default_factory=dict)
    gpu_indices: list[int] = Field(default_factory=list)
    gpu_uuids: list[str] = Field(default_factory=list)
    port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="the port the workload listens on inside its container; the process "
        "runtime passes the host port it allocates as PORT instead",
    )
    health_path: str | None = None
    ssh_authorized_keys: list[str] = Field(default_factory=list)
    labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("id")
    @classmethod
    def _id_is_safe(cls, value: str) -> str:
        if not _WORKLOAD_ID_RE.match(value):
            raise ValueError(
                "workload id must be 1-128 characters of letters, digits, '_', '.' or '-', "
                "starting with a letter or digit"
            )
        return value

    @field_validator("env")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not _ENV_NAME_RE.match(name):
                raise ValueError(f"invalid environment variable name {name!r}")
        return value

    @field_validator("gpu_indices")
    @classmethod
    def _indices(cls, value: list[int]) -> list[int]:
        if any(i < 0 for i in value):
            raise ValueError("GPU indices must be non-negative")
        if len(set(value)) != len(value):
            raise ValueError("GPU indices must not repeat")
        return value

    @field_validator("health_path")
    @classmethod
    def _health_path(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError("health_path must start with '/'")
        return value

    def spec_hash(self) -> str:
        """A stable digest of the whole spec: equal specs hash equal across processes and hosts."""
        canonical = json.dumps(
            self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=True
        )
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class WorkloadStatus(BaseModel):
    """What a runtime observes about one workload."""

    model_config = ConfigDict(frozen=True)

    id: str
    state: WorkloadState
    exit_code: int | None = Field(
        default=None, description="the command's exit code; 128+N when signal N ended it"
    )
    host_port: int | None = None
    pid: int | None = None
    container_id: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    message: str | None = None
    log_tail: str | None = Field(
        default=None,
        description="the last lines of output; for a running workload the agent sends it when "
        "it changed (None: unchanged since the last report the server answered)",
    )
    log_size: int | None = Field(
        default=None,
        ge=0,
        description="bytes of output so far, where log_tail ends (None where the runtime cannot "
        "tell: docker)",
    )
    spec_hash: str | None = None
