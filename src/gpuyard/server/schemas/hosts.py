"""Hosts, join tokens, GPU types and prices as the native API shows them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, StrictBool, StrictFloat, StrictInt, StrictStr

from gpuyard.core.hosts import GpuType, Host, JoinToken, NewJoinToken, isolates
from gpuyard.server.schemas.common import RequestBody, UtcDatetime, reject_null
from gpuyard.server.services.prices import GpuPrice


class GpuOut(BaseModel):
    index: int
    uuid: str
    name: str
    vram_mb: int | None
    allocated: bool
    workload_id: str | None


class HostOut(BaseModel):
    id: str
    number: int = Field(description="The host's integer id (Vast's machine_id)")
    name: str
    status: str = Field(description="ready, unreachable, offline or removed")
    cordoned: bool
    draining: bool
    verified: bool
    isolates: bool = Field(
        description="The agent runs each workload in a sandbox under a user of its own "
        "(facts.isolation says how, or why not)"
    )
    trusted: bool = Field(
        description="Set by the operator: every org's workloads may run here even though it "
        "does not isolate. A host that neither isolates nor is trusted runs the operator's only"
    )
    address: str
    geolocation: str | None
    inet_up_mbps: float | None
    inet_down_mbps: float | None
    gpus: list[GpuOut]
    facts: dict[str, Any]
    created_at: datetime
    last_heartbeat_at: datetime | None
    status_changed_at: datetime

    @classmethod
    def of(cls, h: Host) -> HostOut:
        return cls(
            id=h.id,
            number=h.number,
            name=h.name,
            status=h.status,
            cordoned=h.cordoned,
            draining=h.draining,
            verified=h.verified,
            isolates=isolates(h.facts),
            trusted=h.trusted,
            address=h.address,
            geolocation=h.geolocation,
            inet_up_mbps=h.inet_up_mbps,
            inet_down_mbps=h.inet_down_mbps,
            gpus=[
                GpuOut(
                    index=g.index,
                    uuid=g.uuid,
                    name=g.name,
                    vram_mb=g.vram_mb,
                    allocated=g.workload_id is not None,
                    workload_id=g.workload_id,
                )
                for g in h.gpus
            ],
            facts=h.facts,
            created_at=h.created_at,
            last_heartbeat_at=h.last_heartbeat_at,
            status_changed_at=h.status_changed_at,
        )


class HostUpdate(RequestBody):
    name: StrictStr | None = Field(default=None, min_length=1, max_length=200)
    geolocation: StrictStr | None = Field(
        default=None, max_length=64, description="Country code, e.g. SE"
    )
    inet_up_mbps: StrictFloat | StrictInt | None = Field(default=None, ge=0)
    inet_down_mbps: StrictFloat | StrictInt | None = Field(default=None, ge=0)
    verified: StrictBool | None = None
    trusted: StrictBool | None = Field(
        default=None,
        description="Let every org's workloads run on this host even if it cannot isolate them "
        "(it then runs them unsandboxed, beside each other and the agent)",
    )

    _no_null = reject_null("name", "verified", "trusted")


class JoinTokenCreate(RequestBody):
    name: StrictStr = Field(default="", max_length=200)
    expires_at: UtcDatetime | None = None


class JoinTokenOut(BaseModel):
    id: str
    name: str
    prefix: str
    status: str = Field(description="active, used, revoked or expired")
    created_at: datetime
    expires_at: datetime | None
    used_at: datetime | None
    used_by_host: str | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, t: JoinToken) -> JoinTokenOut:
        return cls(
            id=t.id,
            name=t.name,
            prefix=t.prefix,
            status=t.status,
            created_at=t.created_at,
            expires_at=t.expires_at,
            used_at=t.used_at,
            used_by_host=t.used_by_host,
            revoked_at=t.revoked_at,
        )


class JoinTokenCreated(JoinTokenOut):
    token: str = Field(description="Give this to `gpuyard agent --token`; shown only once")

    @classmethod
    def of_new(cls, new: NewJoinToken) -> JoinTokenCreated:
        return cls(**JoinTokenOut.of(new.token).model_dump(), token=new.secret)


class GpuTypeOut(BaseModel):
    id: str = Field(description="The type as VectorLay writes it, e.g. rtx-4090")
    name: str
    vram_mb: int | None
    total: int
    available: int
    price_cents_per_hour: dict[str, int | None] = Field(
        description="{'min': …, 'max': …} cents per GPU-hour"
    )

    @classmethod
    def of(cls, t: GpuType, slug: str) -> GpuTypeOut:
        return cls(
            id=slug,
            name=t.name,
            vram_mb=t.vram_mb,
            total=t.total,
            available=t.free,
            price_cents_per_hour={"min": t.min_cents_per_hour, "max": t.max_cents_per_hour},
        )


class PriceSet(RequestBody):
    cents_per_gpu_hour: StrictInt = Field(ge=0, le=10_000_000)


class PriceOut(BaseModel):
    gpu_type: str
    gpu_name: str
    cents_per_gpu_hour: int
    updated_at: datetime

    @classmethod
    def of(cls, p: GpuPrice, slug: str) -> PriceOut:
        return cls(
            gpu_type=slug,
            gpu_name=p.gpu_name,
            cents_per_gpu_hour=p.cents_per_gpu_hour,
            updated_at=p.updated_at,
        )
