"""Vast instances: list (``/api/v1/instances/`` paged, ``/api/v0/instances/``), read, start,
stop, label and destroy (``/api/v0/instances/{id}/``). Ids are the instances' integer numbers;
another org's id is a 404, as an id that does not exist."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from gpuyard.core.clock import Clock
from gpuyard.core.errors import InvalidRequest
from gpuyard.server.compat import vast_listing as listing
from gpuyard.server.compat.vast_scopes import Reader, Writer
from gpuyard.server.deps import ClockDep, Session
from gpuyard.server.schemas.vast import InstanceUpdate, Success, vast_errors
from gpuyard.server.schemas.vast_instances import (
    FilterCombo,
    InstanceFilters,
    InstanceList,
    InstancesPage,
    OneInstance,
    VastInstance,
)
from gpuyard.server.services import instances

router = APIRouter(tags=["vast"])


async def _rows(session: Session, clock: Clock, org_id: str) -> list[VastInstance]:
    found = await listing.drain(
        lambda cursor: instances.list_instances(session, org_id=org_id, limit=100, cursor=cursor)
    )
    now = clock.now()
    return [VastInstance.of(i, now=now) for i in found]


@router.get("/api/v1/instances/", response_model=InstancesPage, responses=vast_errors(403))
async def list_instances_v1(
    principal: Reader,
    session: Session,
    clock: ClockDep,
    select_filters: Annotated[
        str | None,
        Query(max_length=8192, description='JSON, e.g. {"actual_status": {"in": ["running"]}}'),
    ] = None,
    order_by: Annotated[
        str | None,
        Query(max_length=2048, description='JSON, e.g. [{"col": "id", "dir": "asc"}]'),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 25,
    after_token: Annotated[
        str | None, Query(max_length=4096, description="next_token of the previous page")
    ] = None,
    select_cols: Annotated[
        str | None, Query(max_length=4096, description="Ignored: rows are always whole")
    ] = None,
) -> InstancesPage:
    """The caller's instances, a page at a time (`vastai show instances`)."""
    conditions = listing.parse_filters(select_filters)
    order = listing.parse_order(order_by)
    rows = listing.select(await _rows(session, clock, principal.org_id), conditions)
    page, token = listing.paginate(rows, order, limit=limit, after_token=after_token)
    return InstancesPage(
        instances=page,
        next_token=token,
        total_instances=len(rows),
        label_counts=listing.label_counts(rows),
    )


@router.get("/api/v0/instances/", response_model=InstanceList, responses=vast_errors(403))
@router.get("/api/v0/instances", response_model=InstanceList, include_in_schema=False)
async def list_instances_v0(principal: Reader, session: Session, clock: ClockDep) -> InstanceList:
    """Every instance of the caller's org, oldest first (older CLIs; `?owner=me` is implied)."""
    return InstanceList(instances=await _rows(session, clock, principal.org_id))


@router.get(
    "/api/v0/instances/filters/", response_model=InstanceFilters, responses=vast_errors(403)
)
async def instance_filters(principal: Reader, session: Session, clock: ClockDep) -> InstanceFilters:
    """The distinct (status, verification, GPU) values of the caller's instances."""
    combos = {
        (r.actual_status, r.verification, r.gpu_name)
        for r in await _rows(session, clock, principal.org_id)
    }
    return InstanceFilters(
        filters=[
            FilterCombo(actual_status=s, verification=v, gpu_name=g)
            for s, v, g in sorted(combos, key=lambda c: tuple(x or "" for x in c))
        ]
    )


@router.get(
    "/api/v0/instances/{instance_id}/", response_model=OneInstance, responses=vast_errors(403, 404)
)
async def get_instance(
    instance_id: str, principal: Reader, session: Session, clock: ClockDep
) -> OneInstance:
    """One instance (`vastai show instance`), as `{"instances": {row}}`."""
    found = await instances.get_instance(session, org_id=principal.org_id, instance_ref=instance_id)
    return OneInstance(instances=VastInstance.of(found, now=clock.now()))


@router.put(
    "/api/v0/instances/{instance_id}/", response_model=Success, responses=vast_errors(403, 404)
)
async def update_instance(
    instance_id: str, body: InstanceUpdate, principal: Writer, session: Session, clock: ClockDep
) -> Success:
    """`{"state": "running"|"stopped"}` starts or stops it (`vastai start|stop instance`);
    `{"label": "..."}` sets its label (`vastai label instance`)."""
    if body.state is None and "label" not in body.model_fields_set:
        raise InvalidRequest("nothing to change: give state or label", param="state")
    ref, org_id = instance_id, principal.org_id
    if body.state is not None:
        await instances.set_state(
            session, clock=clock, org_id=org_id, instance_ref=ref, running=body.state == "running"
        )
    if "label" in body.model_fields_set:
        await instances.set_label(
            session, clock=clock, org_id=org_id, instance_ref=ref, label=body.label
        )
    return Success()


@router.delete(
    "/api/v0/instances/{instance_id}/", response_model=Success, responses=vast_errors(403, 404)
)
async def destroy_instance(
    instance_id: str, principal: Writer, session: Session, clock: ClockDep
) -> Success:
    """Destroy it (`vastai destroy instance`); its GPUs are free once the host has stopped it."""
    await instances.destroy(session, clock=clock, org_id=principal.org_id, instance_ref=instance_id)
    return Success()
