"""Request bodies and rows of the Vast dialect (``/api/v0/…``, ``/api/v1/instances/``).

Shaped for the official ``vastai`` CLI 1.9.1 (docs/vast-dialect.md): ids are integers, money is
dollars as a float, times are Unix seconds, and a value gpuyard does not know is ``null``, never
invented. Request bodies ignore keys they do not name, as Vast does: the CLI sends many that mean
nothing here (``client_id``, ``python_utf8``, ``image_login``, ...).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr

from gpuyard.core.instances import Instance
from gpuyard.core.offers import Offer
from gpuyard.core.ssh_keys import SshKey
from gpuyard.core.tenancy import ApiKey, Org


def epoch(at: datetime | None) -> float | None:
    return at.timestamp() if at is not None else None


def dollars(cents: int) -> float:
    return cents / 100


class VastBody(BaseModel):
    model_config = ConfigDict(extra="ignore")


# --- requests ----------------------------------------------------------------------------------


class AskCreate(VastBody):
    """``PUT /api/v0/asks/{offer_id}/``: rent an offer (``vastai create instance``)."""

    image: StrictStr | None = Field(default=None, max_length=500)
    env: dict[str, StrictStr] | None = Field(
        default=None,
        max_length=256,
        description='Environment variables; docker-style keys (`"-p 8080:8080": "1"`) are '
        "port mappings and other flags, not variables",
    )
    disk: StrictFloat | StrictInt | None = Field(default=None, gt=0, le=1_000_000)
    label: StrictStr | None = Field(default=None, max_length=200)
    onstart: StrictStr | None = Field(default=None, max_length=65536)
    args: list[StrictStr] | None = Field(default=None, max_length=256)
    runtype: StrictStr | None = Field(default=None, max_length=100)
    target_state: Literal["running", "stopped"] | None = None
    price: StrictFloat | StrictInt | None = Field(
        default=None, description="A bid price; accepted and ignored (offers are on-demand)"
    )
    template_hash_id: StrictStr | None = Field(
        default=None, description="Templates are not supported; give an image"
    )


class InstanceUpdate(VastBody):
    """``PUT /api/v0/instances/{id}/``: ``{"state": …}`` or ``{"label": …}``."""

    state: Literal["running", "stopped"] | None = None
    label: StrictStr | None = Field(default=None, max_length=200)


class SshKeyCreate(VastBody):
    ssh_key: StrictStr = Field(min_length=1, max_length=16384)


# --- responses ---------------------------------------------------------------------------------


class VastError(BaseModel):
    success: bool = False
    error: str = Field(description="Stable machine-readable code")
    msg: str = Field(description="What went wrong, for a human (what the CLI prints)")
    request_id: str | None = None


_ERROR_DESCRIPTIONS = {
    400: "Malformed request",
    401: "Missing, unknown, expired or revoked API key",
    403: "The key may not do this",
    404: "No such thing in the caller's organization",
    409: "Conflicts with the current state (e.g. the offer was just rented)",
    422: "The body or parameters do not match the schema",
}


def vast_errors(*statuses: int) -> dict[int | str, dict[str, object]]:
    """OpenAPI ``responses`` for the Vast-shaped errors a route can answer."""
    wanted = sorted({400, 401, 422, *statuses})
    return {s: {"model": VastError, "description": _ERROR_DESCRIPTIONS[s]} for s in wanted}


class Success(BaseModel):
    success: bool = True


class NewContract(BaseModel):
    success: bool = True
    new_contract: int = Field(description="The new instance's id")


class GpuNames(BaseModel):
    gpu_names: list[str]


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


PortBinding = dict[str, str]


class VastInstance(BaseModel):
    """An instance. Values a host does not report (utilisation, SSH, CPU share) are null."""

    id: int
    machine_id: int
    host_id: int
    actual_status: str | None = Field(
        description="null, loading, running, stopped, exited or offline"
    )
    intended_status: str = Field(description="running or stopped")
    cur_state: str | None = Field(
        description="running while the instance holds its GPUs and runs or is starting; "
        "stopped once it ended; null before the host reports"
    )
    next_state: str
    status_msg: str | None
    label: str | None
    gpu_name: str
    num_gpus: int
    gpu_ram: int | None = Field(description="VRAM per GPU, MB")
    gpu_totalram: int | None
    gpu_util: float | None = None
    cpu_cores: float | None = None
    cpu_cores_effective: float | None = None
    cpu_ram: int | None = None
    cpu_util: float | None = None
    mem_usage: float | None = None
    disk_space: float | None = Field(description="GB asked for at creation")
    disk_usage: float | None = None
    disk_util: float | None = None
    dph_total: float = Field(description="Dollars per hour")
    dph_base: float
    image_uuid: str | None
    image_args: list[str]
    image_runtype: str | None
    onstart: str | None
    extra_env: list[list[str]] = Field(description="[[name, value], ...]")
    public_ipaddr: str | None
    ports: dict[str, list[PortBinding]] = Field(
        description='Docker-style: {"8080/tcp": [{"HostIp": "0.0.0.0", "HostPort": "40001"}]}'
    )
    ssh_host: str | None = None
    ssh_port: int | None = None
    direct_port_start: int | None = None
    direct_port_end: int | None = None
    inet_up: float | None
    inet_down: float | None
    geolocation: str | None
    reliability2: float | None = None
    verification: str | None
    start_date: float = Field(description="When it was created, Unix seconds")
    end_date: float | None = None
    uptime_mins: float | None
    exit_code: int | None
    is_bid: bool = False
    template_id: int | None = None
    template_name: str | None = None
    volume_info: list[dict[str, object]] | None = None

    @classmethod
    def of(cls, i: Instance, *, now: datetime) -> VastInstance:
        dph = dollars(i.cents_per_hour)
        ports: dict[str, list[PortBinding]] = {}
        if i.port is not None and i.host_port is not None:
            ports[f"{i.port}/tcp"] = [{"HostIp": "0.0.0.0", "HostPort": str(i.host_port)}]
        uptime = None
        if i.actual_status == "running" and i.started_at is not None:
            uptime = (now - i.started_at).total_seconds() / 60
        return cls(
            id=i.number,
            machine_id=i.machine_id,
            host_id=i.machine_id,
            actual_status=i.actual_status,
            intended_status=i.intended_status,
            cur_state=_cur_state(i.state),
            next_state=i.intended_status,
            status_msg=i.status_msg,
            label=i.label,
            gpu_name=i.gpu_name,
            num_gpus=i.num_gpus,
            gpu_ram=i.gpu_ram_mb,
            gpu_totalram=i.gpu_ram_mb * i.num_gpus if i.gpu_ram_mb is not None else None,
            disk_space=i.disk_gb,
            dph_total=dph,
            dph_base=dph,
            image_uuid=i.image,
            image_args=list(i.args),
            image_runtype=i.runtype,
            onstart=i.onstart if i.onstart is not None else i.command,
            extra_env=[[name, value] for name, value in i.env],
            public_ipaddr=i.public_ipaddr,
            ports=ports,
            inet_up=i.inet_up,
            inet_down=i.inet_down,
            geolocation=i.geolocation,
            verification=_verification(i.host_verified),
            start_date=i.created_at.timestamp(),
            uptime_mins=uptime,
            exit_code=i.exit_code,
        )


def _cur_state(workload_state: str | None) -> str | None:
    if workload_state in ("pending", "starting", "running"):
        return "running"
    if workload_state in ("stopped", "exited", "failed"):
        return "stopped"
    return None


def _verification(verified: bool | None) -> str | None:
    if verified is None:
        return None
    return "verified" if verified else "unverified"


class InstancesPage(BaseModel):
    """``GET /api/v1/instances/``: one page; follow ``next_token`` until it is null."""

    instances: list[VastInstance]
    next_token: str | None
    total_instances: int = Field(description="Instances matching select_filters, all pages")
    label_counts: dict[str, int] = Field(description='Per label; "" counts unlabeled ones')


class InstanceList(BaseModel):
    instances: list[VastInstance]


class OneInstance(BaseModel):
    instances: VastInstance = Field(description="One row, under the plural key (as Vast)")


class FilterCombo(BaseModel):
    actual_status: str | None
    verification: str | None
    gpu_name: str


class InstanceFilters(BaseModel):
    filters: list[FilterCombo]


class VastUser(BaseModel):
    """The caller's organization as a Vast user. gpuyard has no billing yet: balance and
    credit are 0."""

    id: int = Field(description="The organization's integer id")
    username: str = Field(description="The organization's slug")
    fullname: str = Field(description="The organization's name")
    email: str | None = None
    balance: float = 0.0
    credit: float = 0.0
    host_agreement_accepted: bool = False
    org_id: str
    key_id: str
    scopes: list[str]

    @classmethod
    def of(cls, org: Org, *, key_id: str, scopes: list[str]) -> VastUser:
        return cls(
            id=org.number,
            username=org.slug,
            fullname=org.name,
            org_id=org.id,
            key_id=key_id,
            scopes=scopes,
        )


class VastSshKey(BaseModel):
    id: int
    name: str
    key: str = Field(description="The OpenSSH public key")
    fingerprint: str
    created_at: float

    @classmethod
    def of(cls, k: SshKey) -> VastSshKey:
        return cls(
            id=k.number,
            name=k.name,
            key=k.public_key,
            fingerprint=k.fingerprint,
            created_at=k.created_at.timestamp(),
        )


class SshKeyCreated(VastSshKey):
    success: bool = True


class VastApiKey(BaseModel):
    """An API key without its secret: ``prefix`` is the part shown everywhere."""

    id: int
    key_id: str
    name: str
    prefix: str
    scopes: list[str]
    status: str
    created_at: float
    expires_at: float | None
    last_used_at: float | None
    revoked_at: float | None

    @classmethod
    def of(cls, k: ApiKey) -> VastApiKey:
        return cls(
            id=k.number,
            key_id=k.id,
            name=k.name,
            prefix=k.prefix,
            scopes=sorted(s.value for s in k.scopes),
            status=k.status.value,
            created_at=k.created_at.timestamp(),
            expires_at=epoch(k.expires_at),
            last_used_at=epoch(k.last_used_at),
            revoked_at=epoch(k.revoked_at),
        )


class ApiKeys(BaseModel):
    apikeys: list[VastApiKey]
