"""Offers, instances (VMs) and SSH keys as the native API shows them."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field, StrictBool, StrictFloat, StrictInt, StrictStr

from gpuyard.core.instances import Instance
from gpuyard.core.offers import Offer
from gpuyard.core.ssh_keys import SshKey
from gpuyard.server.schemas.common import RequestBody


class OfferOut(BaseModel):
    id: int
    host_id: str
    machine_id: int
    gpu_name: str
    num_gpus: int
    gpu_ram_mb: int | None
    cpu_cores: float | None
    cpu_ram_mb: int | None
    disk_space_gb: float | None
    price_cents_per_hour: int
    geolocation: str | None
    cuda_version: float | None
    compute_cap: int | None
    verified: bool

    @classmethod
    def of(cls, o: Offer) -> OfferOut:
        return cls(
            id=o.id,
            host_id=o.host_id,
            machine_id=o.machine_id,
            gpu_name=o.gpu_name,
            num_gpus=o.num_gpus,
            gpu_ram_mb=o.gpu_ram,
            cpu_cores=o.cpu_cores,
            cpu_ram_mb=o.cpu_ram,
            disk_space_gb=o.disk_space,
            price_cents_per_hour=o.cents_per_hour,
            geolocation=o.geolocation,
            cuda_version=o.cuda_max_good,
            compute_cap=o.compute_cap,
            verified=o.verified,
        )


class OffersOut(BaseModel):
    data: list[OfferOut]


class VmCreate(RequestBody):
    offer_id: StrictInt = Field(gt=0, description="An offer's id from GET …/offers")
    image: StrictStr | None = Field(default=None, max_length=500)
    command: StrictStr | None = Field(default=None, max_length=65536)
    onstart: StrictStr | None = Field(default=None, max_length=65536)
    args: list[StrictStr] = Field(default_factory=list, max_length=256)
    env: dict[str, StrictStr] = Field(default_factory=dict, max_length=256)
    port: StrictInt | None = Field(default=None, ge=1, le=65535)
    label: StrictStr | None = Field(default=None, max_length=200)
    disk_gb: StrictFloat | StrictInt | None = Field(default=None, gt=0, le=1_000_000)
    start: StrictBool = True


class VmUpdate(RequestBody):
    label: StrictStr | None = Field(max_length=200)


class VmOut(BaseModel):
    id: str
    number: int = Field(description="The instance's integer id (the Vast dialect's id)")
    host_id: str
    offer_id: int
    gpu_name: str
    num_gpus: int
    price_cents_per_hour: int
    image: str | None
    label: str | None
    intended_status: str
    actual_status: str | None = Field(
        description="null, loading, running, stopped, exited or offline"
    )
    status_msg: str | None
    exit_code: int | None
    public_ipaddr: str | None
    port: int | None = Field(description="The host port the workload listens on")
    created_at: datetime
    started_at: datetime | None

    @classmethod
    def of(cls, i: Instance) -> VmOut:
        return cls(
            id=i.id,
            number=i.number,
            host_id=i.host_id,
            offer_id=i.offer_id,
            gpu_name=i.gpu_name,
            num_gpus=i.num_gpus,
            price_cents_per_hour=i.cents_per_hour,
            image=i.image,
            label=i.label,
            intended_status=i.intended_status,
            actual_status=i.actual_status,
            status_msg=i.status_msg,
            exit_code=i.exit_code,
            public_ipaddr=i.public_ipaddr,
            port=i.host_port,
            created_at=i.created_at,
            started_at=i.started_at,
        )


class SshKeyCreate(RequestBody):
    public_key: StrictStr = Field(min_length=1, max_length=16384)
    name: StrictStr | None = Field(default=None, max_length=200)


class SshKeyOut(BaseModel):
    id: str
    name: str
    public_key: str
    fingerprint: str
    created_at: datetime

    @classmethod
    def of(cls, k: SshKey) -> SshKeyOut:
        return cls(
            id=k.id,
            name=k.name,
            public_key=k.public_key,
            fingerprint=k.fingerprint,
            created_at=k.created_at,
        )
