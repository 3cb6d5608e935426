"""``GET /v1/orgs/{org_id}/offers``: search free GPUs (the offer query language of core/)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from gpuyard.core.offer_query import OfferQuery, parse_cli_order, parse_cli_query, parse_query_param
from gpuyard.server.deps import OrgMember, Session
from gpuyard.server.schemas.common import errors
from gpuyard.server.schemas.instances import OfferOut, OffersOut
from gpuyard.server.services import offers

router = APIRouter(prefix="/v1/orgs/{org_id}/offers", tags=["offers"])


@router.get("", response_model=OffersOut, responses=errors(403, 404))
async def search_offers(
    org_id: str,
    principal: OrgMember,
    session: Session,
    query: Annotated[
        str | None,
        Query(
            max_length=4096,
            description="CLI syntax, e.g. `gpu_name=RTX_4090 num_gpus>=2 geolocation in [SE,TW]`",
        ),
    ] = None,
    q: Annotated[
        str | None,
        Query(max_length=8192, description='Vast JSON, e.g. {"num_gpus": {"gte": 2}}'),
    ] = None,
    order: Annotated[
        str | None, Query(max_length=200, description="e.g. `dph_total` or `dph_total-` (desc)")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 64,
) -> OffersOut:
    """Offers ordered by price unless `order` says otherwise."""
    parsed = parse_query_param(q) if q else OfferQuery()
    if query:
        cli = parse_cli_query(query)
        parsed = OfferQuery(filters=parsed.filters + cli.filters, order=parsed.order)
    if order:
        parsed = OfferQuery(filters=parsed.filters, order=parse_cli_order(order))
    parsed = OfferQuery(filters=parsed.filters, order=parsed.order, limit=limit)
    found = await offers.search(session, query=parsed, org_id=org_id)
    return OffersOut(data=[OfferOut.of(o) for o in found])
