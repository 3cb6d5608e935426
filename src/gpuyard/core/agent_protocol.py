"""The agent protocol: what ``gpuyard agent`` and the server say to each other over HTTP.

The agent always calls the server (hosts behind NAT work):

``POST /v1/agent/register``  with a join token (``RegisterRequest``) → the host's id and its own
    credential (``RegisterResponse``), which the agent keeps in its state dir; the join token is
    spent.
``POST /v1/agent/heartbeat`` with ``Authorization: Bearer <host credential>`` and
    ``HeartbeatRequest`` (facts, and the observed status of every workload it runs) → the host's
    status and every workload the host should have, with its desired state
    (``HeartbeatResponse``). The agent reconciles its runtime toward that list.

``POST /v1/agent/wait`` with the credential and ``WaitRequest`` → ``WaitResponse`` as soon as
    the host's assignments change on the replica that answers, or after ``timeout_s``: between
    heartbeats the agent waits here, so new work starts within moments instead of an interval.

One round trip per heartbeat carries facts, status reports and assignments, so a thousand hosts
every five seconds is two hundred small requests per second.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from gpuyard.core.hosts import HostFacts
from gpuyard.core.workload import WorkloadSpec, WorkloadStatus

HOST_CREDENTIAL_PREFIX = "gyh_"
JOIN_TOKEN_PREFIX = "gyj_"
MAX_WORKLOADS_PER_HEARTBEAT = 512
MAX_WAIT_S = 60.0  # the longest an agent may wait for work in one request


class Desired(StrEnum):
    RUNNING = "running"
    STOPPED = "stopped"
    REMOVED = "removed"


class HostStatus(StrEnum):
    READY = "ready"
    UNREACHABLE = "unreachable"
    OFFLINE = "offline"
    REMOVED = "removed"


class RegisterRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=1, max_length=200)
    name: str | None = Field(default=None, max_length=200)
    facts: HostFacts


class RegisterResponse(BaseModel):
    host_id: str
    credential: str = Field(description="the host's secret; send it as Bearer on every call")
    heartbeat_interval_s: float


class HeartbeatRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    facts: HostFacts
    workloads: list[WorkloadStatus] = Field(
        default_factory=list, max_length=MAX_WORKLOADS_PER_HEARTBEAT
    )


class Assignment(BaseModel):
    spec: WorkloadSpec
    desired: Desired


class HeartbeatResponse(BaseModel):
    host_id: str
    status: HostStatus
    cordoned: bool
    heartbeat_interval_s: float
    workloads: list[Assignment]


class WaitRequest(BaseModel):
    """Wait until the host's assignments change (then heartbeat at once) or ``timeout_s``."""

    model_config = ConfigDict(extra="forbid")

    mark: str | None = Field(
        default=None, max_length=64, description="the mark of the previous wait's answer"
    )
    timeout_s: float = Field(ge=0, le=MAX_WAIT_S)


class WaitResponse(BaseModel):
    changed: bool = Field(description="true: the host's assignments changed; heartbeat now")
    mark: str
