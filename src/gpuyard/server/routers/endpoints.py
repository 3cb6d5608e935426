"""Serverless endpoints and workergroups natively: ``/v1/orgs/{org_id}/endpoints`` and
``/v1/orgs/{org_id}/workergroups``, the same services as the Vast dialect's ``endptjobs`` and
``autojobs`` (compat/vast_endpoints.py)."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from gpuyard.core.autoscaling import EndpointKnobs
from gpuyard.server.deps import ClockDep, OrgMember, Session
from gpuyard.server.routers.params import DEFAULT, Cursor, Limit
from gpuyard.server.schemas.common import PageOut, errors
from gpuyard.server.schemas.endpoints import (
    EndpointCreate,
    EndpointOut,
    EndpointUpdate,
    WorkergroupCreate,
    WorkergroupOut,
    WorkergroupUpdate,
    WorkerOut,
    knob_values,
)
from gpuyard.server.services import endpoints, serverless_workers, workergroups
from gpuyard.server.services.workergroups import WorkergroupSpec

router = APIRouter(prefix="/v1/orgs/{org_id}", tags=["serverless"])


@router.post(
    "/endpoints",
    status_code=status.HTTP_201_CREATED,
    response_model=EndpointOut,
    responses=errors(403, 404, 409),
)
async def create_endpoint(
    org_id: str, body: EndpointCreate, principal: OrgMember, session: Session, clock: ClockDep
) -> EndpointOut:
    """A serverless endpoint: workers come and go with its load (its workergroups run them)."""
    e = await endpoints.create_endpoint(
        session, clock=clock, org_id=org_id, name=body.name, knobs=EndpointKnobs(**body.knobs())
    )
    return EndpointOut.of(e)


@router.get("/endpoints", response_model=PageOut[EndpointOut], responses=errors(403, 404))
async def list_endpoints(
    org_id: str,
    principal: OrgMember,
    session: Session,
    limit: Limit = DEFAULT,
    cursor: Cursor = None,
) -> PageOut[EndpointOut]:
    page = await endpoints.list_endpoints(session, org_id=org_id, limit=limit, cursor=cursor)
    return PageOut[EndpointOut](
        data=[EndpointOut.of(e) for e in page.items],
        has_more=page.has_more,
        next_cursor=page.next_cursor,
    )


@router.get("/endpoints/{endpoint_id}", response_model=EndpointOut, responses=errors(403, 404))
async def get_endpoint(
    org_id: str, endpoint_id: str, principal: OrgMember, session: Session
) -> EndpointOut:
    return EndpointOut.of(await endpoints.get_endpoint(session, org_id=org_id, ref=endpoint_id))


@router.patch("/endpoints/{endpoint_id}", response_model=EndpointOut, responses=errors(403, 404))
async def update_endpoint(
    org_id: str,
    endpoint_id: str,
    body: EndpointUpdate,
    principal: OrgMember,
    session: Session,
    clock: ClockDep,
) -> EndpointOut:
    changes = knob_values(body)
    changes["endpoint_name"] = body.name
    changes["endpoint_state"] = body.state
    e = await endpoints.update_endpoint(
        session, clock=clock, org_id=org_id, ref=endpoint_id, changes=changes
    )
    return EndpointOut.of(e)


@router.delete("/endpoints/{endpoint_id}", response_model=EndpointOut, responses=errors(403, 404))
async def delete_endpoint(
    org_id: str, endpoint_id: str, principal: OrgMember, session: Session, clock: ClockDep
) -> EndpointOut:
    """Delete: its workers drain (requests in flight finish) and stop."""
    e = await endpoints.delete_endpoint(session, clock=clock, org_id=org_id, ref=endpoint_id)
    return EndpointOut.of(e)


@router.get(
    "/endpoints/{endpoint_id}/workers", response_model=list[WorkerOut], responses=errors(403, 404)
)
async def endpoint_workers(
    org_id: str, endpoint_id: str, principal: OrgMember, session: Session
) -> list[WorkerOut]:
    found = await serverless_workers.endpoint_workers(session, org_id=org_id, ref=endpoint_id)
    return [WorkerOut.of(w) for w in found]


@router.post(
    "/workergroups",
    status_code=status.HTTP_201_CREATED,
    response_model=WorkergroupOut,
    responses=errors(403, 404),
)
async def create_workergroup(
    org_id: str, body: WorkergroupCreate, principal: OrgMember, session: Session, clock: ClockDep
) -> WorkergroupOut:
    spec = WorkergroupSpec(
        endpoint_ref=body.endpoint_id,
        template_hash=body.template_hash,
        template_number=body.template_id,
        search_params=body.search_params,
        launch_args=body.launch_args,
        gpu_ram=None if body.gpu_ram is None else float(body.gpu_ram),
        test_workers=body.test_workers,
    )
    g = await workergroups.create_workergroup(session, clock=clock, org_id=org_id, spec=spec)
    return WorkergroupOut.of(g)


@router.get("/workergroups", response_model=PageOut[WorkergroupOut], responses=errors(403, 404))
async def list_workergroups(
    org_id: str,
    principal: OrgMember,
    session: Session,
    endpoint_id: str | None = None,
    limit: Limit = DEFAULT,
    cursor: Cursor = None,
) -> PageOut[WorkergroupOut]:
    page = await workergroups.list_workergroups(
        session, org_id=org_id, limit=limit, cursor=cursor, endpoint_ref=endpoint_id
    )
    return PageOut[WorkergroupOut](
        data=[WorkergroupOut.of(g) for g in page.items],
        has_more=page.has_more,
        next_cursor=page.next_cursor,
    )


@router.get(
    "/workergroups/{workergroup_id}", response_model=WorkergroupOut, responses=errors(403, 404)
)
async def get_workergroup(
    org_id: str, workergroup_id: str, principal: OrgMember, session: Session
) -> WorkergroupOut:
    g = await workergroups.get_workergroup(session, org_id=org_id, ref=workergroup_id)
    return WorkergroupOut.of(g)


@router.patch(
    "/workergroups/{workergroup_id}", response_model=WorkergroupOut, responses=errors(403, 404)
)
async def update_workergroup(
    org_id: str,
    workergroup_id: str,
    body: WorkergroupUpdate,
    principal: OrgMember,
    session: Session,
    clock: ClockDep,
) -> WorkergroupOut:
    spec = WorkergroupSpec(
        template_hash=body.template_hash,
        template_number=body.template_id,
        search_params=body.search_params,
        launch_args=body.launch_args,
        gpu_ram=None if body.gpu_ram is None else float(body.gpu_ram),
        test_workers=body.test_workers,
    )
    g = await workergroups.update_workergroup(
        session, clock=clock, org_id=org_id, ref=workergroup_id, spec=spec
    )
    return WorkergroupOut.of(g)


@router.delete(
    "/workergroups/{workergroup_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=errors(403, 404),
)
async def delete_workergroup(
    org_id: str, workergroup_id: str, principal: OrgMember, session: Session, clock: ClockDep
) -> Response:
    await workergroups.delete_workergroup(session, clock=clock, org_id=org_id, ref=workergroup_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
