"""Serverless endpoints and workergroups as the native API shows them (Vast's field names)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, StrictFloat, StrictStr

from gpuyard.core.serverless import Endpoint, Worker, Workergroup
from gpuyard.server.schemas.common import BigInt, RequestBody, reject_null

Number = StrictFloat | BigInt
_KNOBS = (
    "min_load",
    "min_cold_load",
    "target_util",
    "cold_mult",
    "cold_workers",
    "max_workers",
    "max_queue_time",
    "target_queue_time",
    "inactivity_timeout",
)


class EndpointCreate(RequestBody):
    name: StrictStr = Field(min_length=1, max_length=200, description="Unique in your org")
    min_load: Number | None = Field(default=None, description="perf units/s always planned for")
    min_cold_load: Number | None = None
    target_util: Number | None = Field(default=None, description="in (0, 1]")
    cold_mult: Number | None = None
    cold_workers: BigInt | None = None
    max_workers: BigInt | None = None
    max_queue_time: Number | None = None
    target_queue_time: Number | None = None
    inactivity_timeout: Number | None = Field(
        default=None, description="seconds without a request before scaling to zero"
    )

    def knobs(self) -> dict[str, Any]:
        return knob_values(self)


class EndpointUpdate(RequestBody):
    name: StrictStr | None = Field(default=None, min_length=1, max_length=200)
    state: StrictStr | None = Field(default=None, description="active, suspended or stopped")
    min_load: Number | None = None
    min_cold_load: Number | None = None
    target_util: Number | None = None
    cold_mult: Number | None = None
    cold_workers: BigInt | None = None
    max_workers: BigInt | None = None
    max_queue_time: Number | None = None
    target_queue_time: Number | None = None
    inactivity_timeout: Number | None = None

    _no_null = reject_null("name", "state", *_KNOBS[:-1])


def knob_values(body: BaseModel) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in _KNOBS:
        value = getattr(body, name)
        if value is not None:
            out[name] = value if name in ("cold_workers", "max_workers") else float(value)
    return out


class EndpointOut(BaseModel):
    id: str
    number: int = Field(description="The integer id the Vast dialect uses")
    name: str
    state: str
    api_key: str = Field(description="The endpoint's own key: POST /route/ takes it")
    min_load: float
    min_cold_load: float
    target_util: float
    cold_mult: float
    cold_workers: int
    max_workers: int
    max_queue_time: float
    target_queue_time: float
    inactivity_timeout: float | None
    deleting: bool
    last_request_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, e: Endpoint) -> EndpointOut:
        k = e.knobs
        return cls(
            id=e.id,
            number=e.number,
            name=e.name,
            state=e.state.value,
            api_key=e.api_key,
            min_load=k.min_load,
            min_cold_load=k.min_cold_load,
            target_util=k.target_util,
            cold_mult=k.cold_mult,
            cold_workers=k.cold_workers,
            max_workers=k.max_workers,
            max_queue_time=k.max_queue_time,
            target_queue_time=k.target_queue_time,
            inactivity_timeout=k.inactivity_timeout,
            deleting=e.deleting,
            last_request_at=e.last_request_at,
            created_at=e.created_at,
            updated_at=e.updated_at,
        )


class WorkergroupCreate(RequestBody):
    endpoint_id: StrictStr = Field(description="ep_… or the endpoint's number")
    template_hash: StrictStr | None = Field(default=None, max_length=64)
    template_id: BigInt | None = None
    search_params: StrictStr | None = Field(default=None, max_length=4096)
    launch_args: StrictStr | None = Field(default=None, max_length=65536)
    gpu_ram: Number | None = Field(default=None, description="GB of GPU memory a worker needs")
    test_workers: BigInt | None = None


class WorkergroupUpdate(RequestBody):
    template_hash: StrictStr | None = Field(default=None, max_length=64)
    template_id: BigInt | None = None
    search_params: StrictStr | None = Field(default=None, max_length=4096)
    launch_args: StrictStr | None = Field(default=None, max_length=65536)
    gpu_ram: Number | None = None
    test_workers: BigInt | None = None


class WorkerOut(BaseModel):
    id: int
    status: str
    cur_load: float
    perf: float
    reqs_working: int
    gpu_name: str | None
    loaded_at: datetime | None
    error: str | None

    @classmethod
    def of(cls, w: Worker) -> WorkerOut:
        return cls(
            id=w.number,
            status=w.status.value,
            cur_load=w.cur_load,
            perf=w.max_perf,
            reqs_working=w.reqs_working,
            gpu_name=w.gpu_name,
            loaded_at=w.loaded_at,
            error=w.error_msg,
        )


class WorkergroupOut(BaseModel):
    id: str
    number: int
    endpoint_id: str
    template_hash: str | None
    search_params: str
    launch_args: str | None
    gpu_ram: float
    test_workers: int
    image: str | None
    gpu_type: str | None
    status_reason: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, g: Workergroup) -> WorkergroupOut:
        return cls(
            id=g.id,
            number=g.number,
            endpoint_id=g.endpoint_id,
            template_hash=g.template_hash,
            search_params=g.search_params,
            launch_args=g.launch_args,
            gpu_ram=g.gpu_ram,
            test_workers=g.test_workers,
            image=g.launch.image,
            gpu_type=g.placement.gpu_key,
            status_reason=g.status_reason,
            created_at=g.created_at,
            updated_at=g.updated_at,
        )
