"""Vast offers: search (``/api/v0/bundles/``), rent (``PUT /api/v0/asks/{id}/``), GPU names."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query

from gpuyard.core.offer_query import OfferQuery, parse_json_query, parse_query_param
from gpuyard.server.compat.vast_launch import launch_spec
from gpuyard.server.compat.vast_scopes import Reader, Writer
from gpuyard.server.deps import ClockDep, Session, reads_only
from gpuyard.server.schemas.vast import AskCreate, GpuNames, NewContract, vast_errors
from gpuyard.server.schemas.vast_offers import Offers, VastOffer
from gpuyard.server.services import hosts, instances, offers

router = APIRouter(prefix="/api/v0", tags=["vast"])
public = APIRouter(prefix="/api/v0", tags=["vast"])  # no key needed


async def _search(session: Session, query: OfferQuery, org_id: str) -> Offers:
    found = await offers.search(session, query=query, org_id=org_id)
    return Offers(offers=[VastOffer.of(o) for o in found])


@router.post("/bundles/", response_model=Offers, responses=vast_errors(403))
@router.post("/bundles", response_model=Offers, include_in_schema=False)
@reads_only  # a search: on SQLite it never waits for the write lock
async def search_offers(
    principal: Reader,
    session: Session,
    body: Annotated[
        Any,
        Body(
            description='Filters `{"field": {"op": value}}` plus `order`, `limit`, `type` '
            "(what `vastai search offers` sends)",
            examples=[{"num_gpus": {"gte": "2"}, "order": [["dph_total", "asc"]]}],
        ),
    ] = None,
) -> Offers:
    """Search offers (`vastai search offers`). Unknown fields are a 400 naming the field."""
    return await _search(session, parse_json_query({} if body is None else body), principal.org_id)


@router.get("/bundles/", response_model=Offers, responses=vast_errors(403))
@router.get("/bundles", response_model=Offers, include_in_schema=False)
async def search_offers_get(
    principal: Reader,
    session: Session,
    q: Annotated[
        str | None,
        Query(max_length=8192, description='The same JSON as the POST body, e.g. {"num_gpus": 2}'),
    ] = None,
) -> Offers:
    """Search offers with the query as `?q=<json>` (the REST examples and older CLIs)."""
    return await _search(session, parse_query_param(q) if q else OfferQuery(), principal.org_id)


@router.put("/asks/{offer_id}/", response_model=NewContract, responses=vast_errors(403, 404, 409))
async def rent_offer(
    offer_id: int,
    body: AskCreate,
    principal: Writer,
    session: Session,
    clock: ClockDep,
) -> NewContract:
    """Rent an offer (`vastai create instance`): 404 `no_such_ask` for an unknown offer, 409
    `offer_unavailable` when its GPUs are no longer free."""
    instance = await instances.create_instance(
        session,
        clock=clock,
        org_id=principal.org_id,
        offer_id=offer_id,
        launch=launch_spec(body),
    )
    return NewContract(new_contract=instance.number)


@public.get("/gpu_names/unique/", response_model=GpuNames)
async def gpu_names(session: Session) -> GpuNames:
    """The fleet's GPU type names. No key needed: the CLI asks on every start."""
    types = await hosts.gpu_types(session)
    return GpuNames(gpu_names=sorted({t.name for t in types}))
