"""The routes Vast serves from its autoscaler (``run.vast.ai``), at the root of gpuyard's URL:
what clients call (``/route/``, ``/pubkey/``, worker lists, logs) and what workers call
(``/worker_status/``, ``/delete_requests/``), as the ``vastai`` CLI, Vast's serverless client and
its worker library send them. Errors are Vast-shaped (server/errors.py).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field, StrictBool, StrictInt, StrictStr

from gpuyard.server.compat.vast_scopes import Reader
from gpuyard.server.db import write_session
from gpuyard.server.deps import ClockDep, Context, DeclaredKey, Session, credential
from gpuyard.server.schemas.vast import Success, VastBody, vast_errors
from gpuyard.server.schemas.vast_serverless import ByNumber, Logs, Number, VastWorker
from gpuyard.server.services import route_signing, routing, serverless_logs, serverless_workers
from gpuyard.server.services.serverless_workers import FinishedRequest, StatusReport

router = APIRouter(tags=["vast serverless"])

MAX_ROW_NUMBER = 2**31 - 1  # the numbers of workers and requests fit a 32-bit column
RowNumber = Annotated[StrictInt, Field(ge=0, le=MAX_ROW_NUMBER)]


class RouteBody(VastBody):
    endpoint: StrictStr | None = Field(default=None, max_length=200)
    api_key: StrictStr | None = Field(default=None, max_length=200)
    cost: Number = 0.0
    request_idx: RowNumber = 0
    replay_timeout: Number | None = None


class RouteAnswer(BaseModel):
    endpoint: str
    request_idx: int
    url: str | None = None
    reqnum: int | None = None
    signature: str | None = None
    cost: float | None = None
    status: str | None = None
    worker_id: int | None = None


class WorkerStatusBody(VastBody):
    id: RowNumber
    mtoken: StrictStr = Field(max_length=200)
    loadtime: Number = 0.0
    cur_load: Number = 0.0
    new_load: Number = 0.0
    rej_load: Number = 0.0
    max_perf: Number = 0.0
    cur_perf: Number = 0.0
    num_requests_working: RowNumber = 0
    url: StrictStr | None = Field(default=None, max_length=2048)
    error_msg: StrictStr | None = Field(default=None, max_length=65536)


class DoneRequest(VastBody):
    request_idx: RowNumber
    success: StrictBool = True


class DeleteRequestsBody(VastBody):
    worker_id: RowNumber
    mtoken: StrictStr = Field(max_length=200)
    requests: list[DoneRequest] = Field(default_factory=list, max_length=10_000)


@router.post(
    "/route/",
    response_model=RouteAnswer,
    response_model_exclude_none=True,  # Vast's client takes any answer with "url" as ready
    responses=vast_errors(404, 503),
)
async def route(
    body: RouteBody,
    request: Request,
    session: Session,
    clock: ClockDep,
    _declared: DeclaredKey,
    api_key: Annotated[str | None, Query(max_length=200)] = None,
) -> RouteAnswer:
    """A ready worker's `url` with a signed grant, or `status` while none is ready (poll again
    with the `request_idx` given)."""
    key = body.api_key or api_key or credential(request)
    found = await routing.route(
        session,
        clock=clock,
        api_key=key,
        endpoint_name=body.endpoint,
        cost=float(body.cost),
        request_idx=body.request_idx,
    )
    if isinstance(found, routing.Waiting):
        return RouteAnswer(
            endpoint=found.endpoint, request_idx=found.request_idx, status=found.status
        )
    return RouteAnswer(
        endpoint=found.endpoint,
        request_idx=found.request_idx,
        url=found.url,
        reqnum=found.reqnum,
        signature=found.signature,
        cost=found.cost,
        worker_id=found.worker_id,
    )


@router.get("/pubkey/", response_class=PlainTextResponse)
async def pubkey(ctx: Context) -> PlainTextResponse:
    """The PEM public key `/route/`'s signatures verify with."""
    async with write_session(ctx.sessions) as session:
        pem = await route_signing.public_pem(session, clock=ctx.clock)
    return PlainTextResponse(pem)


@router.post(
    "/get_endpoint_workers/", response_model=list[VastWorker], responses=vast_errors(403, 404)
)
async def endpoint_workers(body: ByNumber, principal: Reader, session: Session) -> list[VastWorker]:
    """`vastai get endpt-workers`: the endpoint's workers and their state."""
    found = await serverless_workers.endpoint_workers(session, org_id=principal.org_id, ref=body.id)
    return [VastWorker.of(w) for w in found]


@router.post(
    "/get_workergroup_workers/", response_model=list[VastWorker], responses=vast_errors(403, 404)
)
async def workergroup_workers(
    body: ByNumber, principal: Reader, session: Session
) -> list[VastWorker]:
    found = await serverless_workers.workergroup_workers(
        session, org_id=principal.org_id, ref=body.id
    )
    return [VastWorker.of(w) for w in found]


@router.post("/get_endpoint_logs/", response_model=Logs, responses=vast_errors(403, 404))
async def endpoint_logs(body: ByNumber, principal: Reader, session: Session) -> Logs:
    """`vastai get endpt-logs`: the endpoint's log at four levels of detail."""
    found = await serverless_logs.endpoint_logs(
        session, org_id=principal.org_id, ref=body.id, tail=body.tail
    )
    return Logs(**found)


@router.post("/get_autogroup_logs/", response_model=Logs, responses=vast_errors(403, 404))
async def workergroup_logs(body: ByNumber, principal: Reader, session: Session) -> Logs:
    """`vastai get wrkgrp-logs`."""
    found = await serverless_logs.workergroup_logs(
        session, org_id=principal.org_id, ref=body.id, tail=body.tail
    )
    return Logs(**found)


@router.post("/worker_status/", response_model=Success, responses=vast_errors())
async def worker_status(body: WorkerStatusBody, session: Session, clock: ClockDep) -> Success:
    """A worker's report: its load, measured perf, requests in flight, and errors."""
    report = StatusReport(
        worker_id=body.id,
        mtoken=body.mtoken,
        loadtime=float(body.loadtime),
        cur_load=float(body.cur_load),
        new_load=float(body.new_load),
        rej_load=float(body.rej_load),
        max_perf=float(body.max_perf),
        cur_perf=float(body.cur_perf),
        num_requests_working=body.num_requests_working,
        url=body.url,
        error_msg=body.error_msg or None,
    )
    await serverless_workers.report_status(session, clock=clock, report=report)
    return Success()


@router.post("/delete_requests/", response_model=Success, responses=vast_errors())
async def delete_requests(body: DeleteRequestsBody, session: Session, clock: ClockDep) -> Success:
    """A worker's finished requests: no longer in flight."""
    await serverless_workers.finish_requests(
        session,
        clock=clock,
        worker_id=body.worker_id,
        mtoken=body.mtoken,
        requests=[FinishedRequest(r.request_idx, r.success) for r in body.requests],
    )
    return Success()
