"""What a host is made of, as its agent reports it: GPUs, resources, address and port range.

These models are the wire format of the agent protocol (``core/agent_protocol.py``): the agent
builds them, the server validates them, so malformed facts are refused with a clear message.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gpuyard.core.ranges import parse_bounds

MAX_MB = 2**31 - 1  # about 2 PB: more than any machine, and it fits a 32-bit column
MAX_GPUS_PER_HOST = 64


class PortRange(BaseModel):
    """An inclusive range of TCP ports, e.g. ``40000-40999``."""

    model_config = ConfigDict(frozen=True)

    start: int
    end: int

    @model_validator(mode="after")
    def _ordered(self) -> PortRange:
        if not 1 <= self.start <= self.end <= 65535:
            raise ValueError(
                f"bad port range {self.start}-{self.end}: need 1 <= start <= end <= 65535"
            )
        return self

    @classmethod
    def parse(cls, text: str) -> PortRange:
        """Parse ``"40000-40999"`` (or a single port ``"40000"``)."""
        start, end = parse_bounds(text, what="port range", example="40000-40999")
        return cls(start=start, end=end)

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.start <= port <= self.end

    def __len__(self) -> int:
        return self.end - self.start + 1

    def __str__(self) -> str:
        return f"{self.start}-{self.end}"


class GpuInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    index: int = Field(ge=0, lt=MAX_GPUS_PER_HOST)
    uuid: str = Field(min_length=1, max_length=128)
    name: str = Field(min_length=1, max_length=128)
    vram_mb: int | None = Field(default=None, ge=0, le=10_000_000)
    logical: bool = Field(default=False, description="declared with --gpus, not found by NVML")


class Isolation(BaseModel):
    """How the host's runtime keeps workloads apart from the host and from each other.

    ``isolates`` is the one bit the scheduler reads (``takes_org``): true when every workload runs
    in a sandbox of its own under a user of its own, so the host may run any org's workloads.
    """

    model_config = ConfigDict(frozen=True)

    isolates: bool
    runtime: str = Field(min_length=1, max_length=32, description="process or docker")
    sandbox: str | None = Field(
        default=None, max_length=100, description='what isolates, e.g. "bubblewrap 0.8.0"'
    )
    reason: str | None = Field(
        default=None, max_length=500, description="why the host does not isolate, when it does not"
    )


class HostFacts(BaseModel):
    """What a heartbeat tells the server about the host."""

    model_config = ConfigDict(frozen=True)

    gpus: list[GpuInfo] = Field(max_length=MAX_GPUS_PER_HOST)
    driver_version: str | None = Field(max_length=64)
    cuda_version: str | None = Field(max_length=32)
    cpu_cores: int = Field(ge=1, le=100_000)
    # Bounded so that every figure derived from them fits its column (offers.cpu_ram is a 32-bit
    # INTEGER on Postgres): an absurd report is a 422, never a failed write.
    ram_mb: int = Field(ge=0, le=MAX_MB)
    disk_free_mb: int = Field(ge=0, le=MAX_MB)
    disk_total_mb: int = Field(ge=0, le=MAX_MB)
    hostname: str = Field(min_length=1, max_length=255)
    address: str = Field(min_length=1, max_length=255)
    port_range: PortRange
    os: str = Field(max_length=255)
    isolation: Isolation | None = Field(
        default=None, description="absent from agents older than the sandbox: not isolating"
    )

    @model_validator(mode="after")
    def _gpus_distinct(self) -> HostFacts:
        if len({g.index for g in self.gpus}) != len(self.gpus):
            raise ValueError("GPU indices must be distinct")
        if len({g.uuid for g in self.gpus}) != len(self.gpus):
            raise ValueError("GPU uuids must be distinct")
        return self


def isolates(facts: Mapping[str, object]) -> bool:
    """Whether stored host facts say the host isolates its workloads (absent: it does not)."""
    isolation = facts.get("isolation")
    return isinstance(isolation, Mapping) and isolation.get("isolates") is True


def takes_org(*, facts: Mapping[str, object], trusted: bool, org_is_operator: bool) -> bool:
    """The tenancy rule: a host that cannot isolate runs only the operator's own workloads,
    unless the operator marked it trusted for every org."""
    return org_is_operator or trusted or isolates(facts)


@dataclass(frozen=True, slots=True)
class Gpu:
    index: int
    uuid: str
    name: str
    vram_mb: int | None
    workload_id: str | None


@dataclass(frozen=True, slots=True)
class Host:
    id: str
    number: int
    name: str
    status: str
    cordoned: bool
    draining: bool
    verified: bool
    trusted: bool
    address: str
    geolocation: str | None
    inet_up_mbps: float | None
    inet_down_mbps: float | None
    gpus: tuple[Gpu, ...]
    facts: dict[str, object]
    created_at: datetime
    last_heartbeat_at: datetime | None
    status_changed_at: datetime


@dataclass(frozen=True, slots=True)
class JoinToken:
    id: str
    name: str
    prefix: str
    status: str  # active | used | revoked | expired
    created_at: datetime
    expires_at: datetime | None
    used_at: datetime | None
    used_by_host: str | None
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class NewJoinToken:
    token: JoinToken
    secret: str


@dataclass(frozen=True, slots=True)
class GpuType:
    """A GPU type across the fleet (``GET /v1/gpus``)."""

    key: str
    name: str
    vram_mb: int | None
    total: int
    free: int
    min_cents_per_hour: int | None
    max_cents_per_hour: int | None
