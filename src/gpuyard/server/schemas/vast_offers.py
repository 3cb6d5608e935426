"""Offer rows of the Vast dialect (``POST /api/v0/bundles/``)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from gpuyard.core.offers import Offer
from gpuyard.server.schemas.vast import dollars


class VastOffer(BaseModel):
    """An offer. Every field of the offer query language is here; those no gpuyard host
    reports are always null."""

    id: int
    ask_contract_id: int
    machine_id: int
    host_id: int = Field(description="The host's integer id (gpuyard hosts are machines)")
    num_gpus: int
    gpu_name: str
    gpu_ram: int | None = Field(description="VRAM per GPU, MB")
    gpu_total_ram: int | None
    cpu_cores: float | None = Field(description="The offer's share of the host's CPUs")
    cpu_cores_effective: float | None
    cpu_ram: int | None = Field(description="MB")
    disk_space: float | None = Field(description="GB")
    dph_total: float = Field(description="Dollars per hour")
    dph_base: float
    discounted_dph_total: float
    reliability: float | None
    reliability2: float | None
    inet_up: float | None
    inet_down: float | None
    geolocation: str | None
    cuda_max_good: float | None
    compute_cap: int | None
    driver_version: str | None
    verified: bool
    verification: str
    rentable: bool
    rented: bool
    external: bool = False
    direct_port_count: int | None
    dlperf: float | None
    score: float | None
    public_ipaddr: str | None
    duration: float | None = Field(default=None, description="null: offers have no end date")
    bw_nvlink: float | None = None
    cluster_id: int | None = None
    cpu_arch: str | None = None
    cpu_ghz: float | None = None
    datacenter: bool | None = None
    disk_bw: float | None = None
    dlperf_per_dphtotal: float | None = None
    flops_per_dphtotal: float | None = None
    gpu_arch: str | None = None
    gpu_display_active: bool | None = None
    gpu_frac: float | None = None
    gpu_max_power: float | None = None
    gpu_max_temp: float | None = None
    gpu_mem_bw: float | None = None
    has_avx: bool | None = None
    inet_down_cost: float | None = None
    inet_up_cost: float | None = None
    min_bid: float | None = None
    mobo_name: str | None = None
    pci_gen: float | None = None
    pcie_bw: float | None = None
    static_ip: bool | None = None
    storage_cost: float | None = None
    total_flops: float | None = None
    ubuntu_version: str | None = None
    vms_enabled: bool | None = None

    @classmethod
    def of(cls, o: Offer) -> VastOffer:
        dph = dollars(o.cents_per_hour)
        return cls(
            id=o.id,
            ask_contract_id=o.id,
            machine_id=o.machine_id,
            host_id=o.machine_id,
            num_gpus=o.num_gpus,
            gpu_name=o.gpu_name,
            gpu_ram=o.gpu_ram,
            gpu_total_ram=o.gpu_total_ram,
            cpu_cores=o.cpu_cores,
            cpu_cores_effective=o.cpu_cores,
            cpu_ram=o.cpu_ram,
            disk_space=o.disk_space,
            dph_total=dph,
            dph_base=dph,
            discounted_dph_total=dph,
            reliability=o.reliability,
            reliability2=o.reliability,
            inet_up=o.inet_up,
            inet_down=o.inet_down,
            geolocation=o.geolocation,
            cuda_max_good=o.cuda_max_good,
            compute_cap=o.compute_cap,
            driver_version=o.driver_version,
            verified=o.verified,
            verification="verified" if o.verified else "unverified",
            rentable=o.rentable,
            rented=o.rented,
            direct_port_count=o.direct_port_count,
            dlperf=o.dlperf,
            score=o.score,
            public_ipaddr=o.public_ipaddr,
        )


class Offers(BaseModel):
    offers: list[VastOffer]
