"""Instance rows of the Vast dialect (``/api/v1/instances/``, ``/api/v0/instances/…``)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from gpuyard.core.instances import Instance
from gpuyard.server.schemas.vast import dollars

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
