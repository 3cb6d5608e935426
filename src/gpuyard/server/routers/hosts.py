"""``/v1/admin/join-tokens``, ``/v1/admin/hosts`` and ``/v1/admin/prices``: the operator's fleet."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from gpuyard.core import gpu_names
from gpuyard.server.deps import ClockDep, Operator, Session
from gpuyard.server.routers.params import DEFAULT, Cursor, Limit
from gpuyard.server.schemas.common import PageOut, errors, page_of
from gpuyard.server.schemas.hosts import (
    HostOut,
    HostUpdate,
    JoinTokenCreate,
    JoinTokenCreated,
    JoinTokenOut,
    PriceOut,
    PriceSet,
)
from gpuyard.server.services import hosts, join_tokens, prices

router = APIRouter(prefix="/v1/admin", tags=["operator: fleet"])


@router.post(
    "/join-tokens",
    status_code=status.HTTP_201_CREATED,
    response_model=JoinTokenCreated,
    responses=errors(403),
)
async def create_join_token(
    body: JoinTokenCreate, principal: Operator, session: Session, clock: ClockDep
) -> JoinTokenCreated:
    """A single-use token for `gpuyard agent --token`; its secret is in this response only."""
    new = await join_tokens.create(session, clock=clock, name=body.name, expires_at=body.expires_at)
    return JoinTokenCreated.of_new(new)


@router.get("/join-tokens", response_model=PageOut[JoinTokenOut], responses=errors(403))
async def list_join_tokens(
    principal: Operator,
    session: Session,
    clock: ClockDep,
    limit: Limit = DEFAULT,
    cursor: Cursor = None,
) -> PageOut[JoinTokenOut]:
    page = await join_tokens.list_tokens(session, clock=clock, limit=limit, cursor=cursor)
    return page_of(page, JoinTokenOut.of)


@router.delete("/join-tokens/{token_id}", response_model=JoinTokenOut, responses=errors(403, 404))
async def revoke_join_token(
    token_id: str, principal: Operator, session: Session, clock: ClockDep
) -> JoinTokenOut:
    return JoinTokenOut.of(await join_tokens.revoke(session, clock=clock, token_id=token_id))


@router.get("/hosts", response_model=PageOut[HostOut], responses=errors(403))
async def list_hosts(
    principal: Operator,
    session: Session,
    status: Annotated[str | None, Query(description="ready, unreachable, offline, removed")] = None,
    limit: Limit = DEFAULT,
    cursor: Cursor = None,
) -> PageOut[HostOut]:
    page = await hosts.list_hosts(session, status=status, limit=limit, cursor=cursor)
    return page_of(page, HostOut.of)


@router.get("/hosts/{host_id}", response_model=HostOut, responses=errors(403, 404))
async def get_host(host_id: str, principal: Operator, session: Session) -> HostOut:
    return HostOut.of(await hosts.get_host(session, host_id=host_id))


@router.patch("/hosts/{host_id}", response_model=HostOut, responses=errors(403, 404))
async def update_host(
    host_id: str,
    body: HostUpdate,
    principal: Operator,
    session: Session,
    clock: ClockDep,
) -> HostOut:
    """Set what the agent cannot know: name, geolocation, bandwidth, verified."""
    host = await hosts.update_host(
        session,
        clock=clock,
        host_id=host_id,
        changes=body.model_dump(exclude_unset=True),
    )
    return HostOut.of(host)


async def _cordon(
    session: Session,
    clock: ClockDep,
    host_id: str,
    cordoned: bool,
    draining: bool = False,
) -> HostOut:
    host = await hosts.set_cordon(
        session,
        clock=clock,
        host_id=host_id,
        cordoned=cordoned,
        draining=draining,
    )
    return HostOut.of(host)


@router.post("/hosts/{host_id}/cordon", response_model=HostOut, responses=errors(403, 404, 409))
async def cordon(host_id: str, principal: Operator, session: Session, clock: ClockDep) -> HostOut:
    """Offer nothing new from this host; what runs keeps running."""
    return await _cordon(session, clock, host_id, True)


@router.post("/hosts/{host_id}/uncordon", response_model=HostOut, responses=errors(403, 404, 409))
async def uncordon(host_id: str, principal: Operator, session: Session, clock: ClockDep) -> HostOut:
    return await _cordon(session, clock, host_id, False)


@router.post("/hosts/{host_id}/drain", response_model=HostOut, responses=errors(403, 404, 409))
async def drain(host_id: str, principal: Operator, session: Session, clock: ClockDep) -> HostOut:
    """Cordon and move deployment replicas elsewhere; rented instances stay until destroyed."""
    return await _cordon(session, clock, host_id, True, draining=True)


@router.delete("/hosts/{host_id}", response_model=HostOut, responses=errors(403, 404, 409))
async def remove_host(
    host_id: str,
    principal: Operator,
    session: Session,
    clock: ClockDep,
    force: Annotated[
        bool, Query(description="Remove even while workloads run (they are lost)")
    ] = False,
) -> HostOut:
    return HostOut.of(await hosts.remove_host(session, clock=clock, host_id=host_id, force=force))


@router.get("/prices", response_model=list[PriceOut], responses=errors(403))
async def list_prices(principal: Operator, session: Session) -> list[PriceOut]:
    return [PriceOut.of(p, gpu_names.slug(p.gpu_name)) for p in await prices.list_prices(session)]


@router.put("/prices/{gpu_type}", response_model=PriceOut, responses=errors(403))
async def set_price(
    gpu_type: str,
    body: PriceSet,
    principal: Operator,
    session: Session,
    clock: ClockDep,
) -> PriceOut:
    """Cents per GPU-hour for a GPU type (`rtx-4090`, `RTX_4090` and `RTX 4090` are one type)."""
    price = await prices.set_price(
        session,
        clock=clock,
        gpu_name=gpu_type,
        cents=body.cents_per_gpu_hour,
    )
    return PriceOut.of(price, gpu_names.slug(price.gpu_name))


@router.delete("/prices/{gpu_type}", status_code=204, responses=errors(403, 404))
async def delete_price(gpu_type: str, principal: Operator, session: Session) -> None:
    """Back to the default price (GPUYARD_DEFAULT_GPU_PRICE_CENTS)."""
    await prices.delete_price(session, gpu_name=gpu_type)
