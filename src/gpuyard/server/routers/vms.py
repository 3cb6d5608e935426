"""``/v1/orgs/{org_id}/vms``: rent an offer as an instance and manage it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status
from fastapi.responses import PlainTextResponse

from gpuyard.server.deps import ClockDep, OrgMember, Session
from gpuyard.server.routers.params import DEFAULT, Cursor, Limit
from gpuyard.server.schemas.common import PageOut, errors, page_of
from gpuyard.server.schemas.instances import VmCreate, VmOut, VmUpdate
from gpuyard.server.services import instances
from gpuyard.server.services.instances import LaunchSpec

router = APIRouter(prefix="/v1/orgs/{org_id}/vms", tags=["instances"])


@router.post(
    "", status_code=status.HTTP_201_CREATED, response_model=VmOut, responses=errors(403, 404, 409)
)
async def create_vm(
    org_id: str,
    body: VmCreate,
    principal: OrgMember,
    session: Session,
    clock: ClockDep,
) -> VmOut:
    """Rent an offer: its GPUs are yours until you destroy the instance."""
    launch = LaunchSpec(
        image=body.image,
        command=body.command,
        onstart=body.onstart,
        args=body.args,
        env=body.env,
        port=body.port,
        label=body.label,
        disk_gb=float(body.disk_gb) if body.disk_gb is not None else None,
        start=body.start,
    )
    vm = await instances.create_instance(
        session,
        clock=clock,
        org_id=org_id,
        offer_id=body.offer_id,
        launch=launch,
    )
    return VmOut.of(vm)


@router.get("", response_model=PageOut[VmOut], responses=errors(403, 404))
async def list_vms(
    org_id: str,
    principal: OrgMember,
    session: Session,
    limit: Limit = DEFAULT,
    cursor: Cursor = None,
) -> PageOut[VmOut]:
    page = await instances.list_instances(session, org_id=org_id, limit=limit, cursor=cursor)
    return page_of(page, VmOut.of)


@router.get("/{vm_id}", response_model=VmOut, responses=errors(403, 404))
async def get_vm(org_id: str, vm_id: str, principal: OrgMember, session: Session) -> VmOut:
    return VmOut.of(await instances.get_instance(session, org_id=org_id, instance_ref=vm_id))


@router.patch("/{vm_id}", response_model=VmOut, responses=errors(403, 404))
async def update_vm(
    org_id: str,
    vm_id: str,
    body: VmUpdate,
    principal: OrgMember,
    session: Session,
    clock: ClockDep,
) -> VmOut:
    """Set or clear the label."""
    vm = await instances.set_label(
        session, clock=clock, org_id=org_id, instance_ref=vm_id, label=body.label
    )
    return VmOut.of(vm)


async def _state(
    session: Session, clock: ClockDep, org_id: str, vm_id: str, running: bool, restart: bool = False
) -> VmOut:
    vm = await instances.set_state(
        session, clock=clock, org_id=org_id, instance_ref=vm_id, running=running, restart=restart
    )
    return VmOut.of(vm)


@router.post("/{vm_id}/start", response_model=VmOut, responses=errors(403, 404))
async def start_vm(
    org_id: str, vm_id: str, principal: OrgMember, session: Session, clock: ClockDep
) -> VmOut:
    """Run it; an instance whose command ended runs again from the start."""
    return await _state(session, clock, org_id, vm_id, True)


@router.post("/{vm_id}/stop", response_model=VmOut, responses=errors(403, 404))
async def stop_vm(
    org_id: str, vm_id: str, principal: OrgMember, session: Session, clock: ClockDep
) -> VmOut:
    """Stop it (SIGTERM, then SIGKILL after a grace period); its GPUs stay reserved."""
    return await _state(session, clock, org_id, vm_id, False)


@router.post("/{vm_id}/restart", response_model=VmOut, responses=errors(403, 404))
async def restart_vm(
    org_id: str, vm_id: str, principal: OrgMember, session: Session, clock: ClockDep
) -> VmOut:
    return await _state(session, clock, org_id, vm_id, True, restart=True)


@router.delete("/{vm_id}", response_model=VmOut, responses=errors(403, 404))
async def destroy_vm(
    org_id: str, vm_id: str, principal: OrgMember, session: Session, clock: ClockDep
) -> VmOut:
    """Destroy it; its GPUs are free again once the host has stopped it."""
    vm = await instances.destroy(session, clock=clock, org_id=org_id, instance_ref=vm_id)
    return VmOut.of(vm)


_LOG_HEADERS = {
    "X-Log-Size": {
        "description": "Bytes of output the instance had written where this text ends (absent "
        "where its runtime does not count them); pass it as `after` to get only what follows",
        "schema": {"type": "integer"},
    },
    "X-Log-Start": {
        "description": "Where this text begins in the whole output; past `after` when output "
        "between them is no longer kept",
        "schema": {"type": "integer"},
    },
    "X-Workload-State": {
        "description": "pending, starting, running, exited, failed, stopped or unknown: whether "
        "more output may come",
        "schema": {"type": "string"},
    },
}


@router.get(
    "/{vm_id}/logs",
    response_class=PlainTextResponse,
    responses={
        200: {"content": {"text/plain": {}}, "headers": _LOG_HEADERS},
        **errors(403, 404),
    },
)
async def vm_logs(
    org_id: str,
    vm_id: str,
    principal: OrgMember,
    session: Session,
    tail: Annotated[int, Query(ge=1, le=10_000, description="How many last lines")] = 200,
    after: Annotated[
        int | None,
        Query(
            ge=0,
            description="Only the output after this byte offset (a previous X-Log-Size), to "
            "follow it; `tail` is then ignored",
        ),
    ] = None,
) -> PlainTextResponse:
    """The instance's output as its host last reported it: while it runs, its last 50 lines (at
    most 8 KiB) whenever they changed, about every heartbeat (5 s); once it ended, its last
    lines."""
    part, inst = await instances.logs(
        session, org_id=org_id, instance_ref=vm_id, tail=tail, after=after
    )
    headers = {"X-Workload-State": inst.state or "pending"}
    if part.size is not None and part.start is not None:
        headers["X-Log-Size"] = str(part.size)
        headers["X-Log-Start"] = str(part.start)
    return PlainTextResponse(part.text, headers=headers)
