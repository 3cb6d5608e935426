"""Bodies and rows of Vast's serverless API, as the ``vastai`` CLI 1.9.1 and SDK send and parse
them: endpoints (``/api/v0/endptjobs/``), workergroups (``/api/v0/autojobs/`` and
``/api/v0/workergroups/``), templates (``/api/v0/template/``), worker lists and logs.

In PUT bodies a field sent as ``null`` means "unchanged": the CLI sends every field.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, StrictBool, StrictFloat, StrictStr

from gpuyard.core.serverless import Endpoint, Template, Worker, Workergroup
from gpuyard.server.schemas.common import BigInt
from gpuyard.server.schemas.vast import VastBody, epoch

Number = StrictFloat | BigInt
Ref = BigInt | StrictStr


class EndpointBody(VastBody):
    """``POST /api/v0/endptjobs/`` and ``PUT /api/v0/endptjobs/{id}/``."""

    endpoint_name: StrictStr | None = Field(default=None, max_length=200)
    min_load: Number | None = None
    min_cold_load: Number | None = None
    target_util: Number | None = None
    cold_mult: Number | None = None
    cold_workers: BigInt | None = None
    max_workers: BigInt | None = None
    max_queue_time: Number | None = None
    target_queue_time: Number | None = None
    inactivity_timeout: Number | None = None
    endpoint_state: StrictStr | None = Field(default=None, max_length=16)

    def knob_values(self) -> dict[str, Any]:
        """The knobs given (not ``null``), floats as floats."""
        out: dict[str, Any] = {}
        for name in (
            "inactivity_timeout",
            "min_load",
            "min_cold_load",
            "target_util",
            "cold_mult",
            "max_queue_time",
            "target_queue_time",
        ):
            value = getattr(self, name)
            if value is not None:
                out[name] = float(value)
        for name in ("cold_workers", "max_workers"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out


class WorkergroupBody(VastBody):
    """``POST /api/v0/autojobs/`` (``/api/v0/workergroups/``) and ``PUT …/{id}/``."""

    endpoint_id: Ref | None = None
    endpoint_name: StrictStr | None = Field(default=None, max_length=200)
    template_hash: StrictStr | None = Field(default=None, max_length=64)
    template_id: BigInt | None = None
    search_params: StrictStr | None = Field(default=None, max_length=4096)
    launch_args: StrictStr | None = Field(default=None, max_length=65536)
    gpu_ram: Number | None = None
    test_workers: BigInt | None = None


class TemplateBody(VastBody):
    """``POST /api/v0/template/`` (``vastai create template``)."""

    name: StrictStr | None = Field(default=None, max_length=200)
    image: StrictStr | None = Field(default=None, max_length=500)
    tag: StrictStr | None = Field(default=None, max_length=128)
    env: StrictStr | None = Field(default=None, max_length=16384)
    onstart: StrictStr | None = Field(default=None, max_length=65536)
    runtype: StrictStr | None = Field(default=None, max_length=32)
    extra_filters: dict[str, Any] | None = None
    recommended_disk_space: Number | StrictStr | None = None
    readme: StrictStr | None = Field(default=None, max_length=65536)
    desc: StrictStr | None = Field(default=None, max_length=4096)
    private: StrictBool | None = None


class TemplateDelete(VastBody):
    hash_id: StrictStr | None = Field(default=None, max_length=64)
    template_id: BigInt | None = None


class ByNumber(VastBody):
    """``{"id": N}``: the endpoint or workergroup the autoscaler routes ask about."""

    id: BigInt
    tail: BigInt | None = Field(default=None, ge=1, le=10_000)


class VastEndpoint(BaseModel):
    id: int
    endpoint_id: str = Field(description="gpuyard's id (ep_…)")
    endpoint_name: str
    api_key: str = Field(description="The endpoint's own key: /route/ takes it")
    user_id: int = Field(description="The organization's integer id")
    created_at: float
    min_load: float
    min_cold_load: float
    target_util: float
    cold_mult: float
    cold_workers: int
    max_workers: int
    max_queue_time: float
    target_queue_time: float
    inactivity_timeout: float | None
    endpoint_state: str

    @classmethod
    def of(cls, e: Endpoint, *, org_number: int) -> VastEndpoint:
        k = e.knobs
        return cls(
            id=e.number,
            endpoint_id=e.id,
            endpoint_name=e.name,
            api_key=e.api_key,
            user_id=org_number,
            created_at=e.created_at.timestamp(),
            min_load=k.min_load,
            min_cold_load=k.min_cold_load,
            target_util=k.target_util,
            cold_mult=k.cold_mult,
            cold_workers=k.cold_workers,
            max_workers=k.max_workers,
            max_queue_time=k.max_queue_time,
            target_queue_time=k.target_queue_time,
            inactivity_timeout=k.inactivity_timeout,
            endpoint_state=e.state.value,
        )


class VastWorkergroup(BaseModel):
    id: int
    workergroup_id: str = Field(description="gpuyard's id (wg_…)")
    endpoint_id: int
    endpoint_name: str
    user_id: int
    template_hash: str | None
    template_id: int | None
    search_params: str
    launch_args: str | None
    gpu_ram: float
    test_workers: int
    created_at: float
    status_msg: str | None

    @classmethod
    def of(cls, g: Workergroup, *, org_number: int) -> VastWorkergroup:
        return cls(
            id=g.number,
            workergroup_id=g.id,
            endpoint_id=g.endpoint_number,
            endpoint_name=g.endpoint_name,
            user_id=org_number,
            template_hash=g.template_hash,
            template_id=g.template_number,
            search_params=g.search_params,
            launch_args=g.launch_args,
            gpu_ram=g.gpu_ram,
            test_workers=g.test_workers,
            created_at=g.created_at.timestamp(),
            status_msg=g.status_reason,
        )


class VastTemplate(BaseModel):
    id: int
    hash_id: str
    name: str | None
    image: str | None
    tag: str | None
    env: str | None
    onstart: str | None
    runtype: str | None
    extra_filters: dict[str, Any]
    recommended_disk_space: float | None
    readme: str | None
    desc: str | None
    private: bool
    creator_id: int
    created_at: float

    @classmethod
    def of(cls, t: Template, *, creator_number: int) -> VastTemplate:
        return cls(
            id=t.number,
            hash_id=t.hash_id,
            name=t.name,
            image=t.image,
            tag=t.tag,
            env=t.env,
            onstart=t.onstart,
            runtype=t.runtype,
            extra_filters=t.extra_filters,
            recommended_disk_space=t.disk_space,
            readme=t.readme,
            desc=t.description,
            private=t.private,
            creator_id=creator_number,
            created_at=t.created_at.timestamp(),
        )


class VastWorker(BaseModel):
    id: int
    status: str
    endpoint_id: int
    workergroup_id: int
    cur_load: float
    new_load: float
    cur_perf: float
    perf: float
    measured_perf: float
    reqs_working: int
    loadtime: float | None
    loaded_at: float | None
    started_at: float | None
    gpu_name: str | None
    error_msg: str | None

    @classmethod
    def of(cls, w: Worker) -> VastWorker:
        return cls(
            id=w.number,
            status=w.status.value,
            endpoint_id=w.endpoint_number,
            workergroup_id=w.workergroup_number,
            cur_load=w.cur_load,
            new_load=w.new_load,
            cur_perf=w.cur_perf,
            perf=w.max_perf,
            measured_perf=w.max_perf,
            reqs_working=w.reqs_working,
            loadtime=w.loadtime,
            loaded_at=epoch(w.loaded_at),
            started_at=epoch(w.started_at),
            gpu_name=w.gpu_name,
            error_msg=w.error_msg,
        )


class Results(BaseModel):
    success: bool = True
    results: list[Any]


class OneEndpoint(BaseModel):
    """One endpoint: ``result`` (the serverless SDK reads it) and ``results`` (as a list)."""

    success: bool = True
    result: VastEndpoint
    results: list[VastEndpoint]


class Created(BaseModel):
    success: bool = True
    result: int


class WorkergroupCreated(BaseModel):
    success: bool = True
    id: int
    result: int


class TemplateCreated(BaseModel):
    success: bool = True
    template: VastTemplate


class Templates(BaseModel):
    success: bool = True
    templates: list[VastTemplate]


class Message(BaseModel):
    success: bool = True
    msg: str


class Logs(BaseModel):
    info0: str
    info1: str
    trace: str
    debug: str
