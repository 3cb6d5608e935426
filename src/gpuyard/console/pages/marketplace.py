"""The marketplace: offer search in the Vast query language (``gpu_name=RTX_4090 num_gpus>=2``),
sort, and renting an offer as an instance."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from gpuyard.console.api import ApiError
from gpuyard.console.pages.wrap import Wrap
from gpuyard.console.web import NavItem, Visit, action, page, pairs, text

NAV = NavItem("/marketplace", "Marketplace")

ORDERS = {
    "dph_total": "Price, lowest first",
    "dph_total-": "Price, highest first",
    "num_gpus-": "Most GPUs first",
    "gpu_ram-": "Most GPU memory first",
}


async def view(visit: Visit, error: str | None = None, status: int = 200) -> Response:
    params = visit.request.query_params
    query = params.get("query", "").strip()
    order = params.get("order", "dph_total")
    offers: list[dict[str, Any]] = []
    search_error = None
    try:
        found = await visit.api.get(visit.api.org("offers"), query=query, order=order, limit=200)
        offers = found["data"]
    except ApiError as exc:  # the API's words for a query it cannot parse
        if exc.status not in (400, 422):
            raise
        search_error = exc.message
    return visit.render(
        "marketplace.html",
        status=status,
        error=error or search_error,
        offers=offers,
        query=query,
        order=order,
        orders=ORDERS,
    )


async def rent_form(
    visit: Visit, error: str | None = None, status: int = 200, form: dict[str, str] | None = None
) -> Response:
    offer_id = visit.request.path_params["offer_id"]
    offers = await visit.api.get(visit.api.org("offers"), query=f"id={offer_id}", limit=1)
    return visit.render(
        "rent.html",
        status=status,
        error=error,
        offer=offers["data"][0] if offers["data"] else None,
        offer_id=offer_id,
        form=form or {},
    )


async def rent(visit: Visit) -> str:
    form = await visit.form()
    body: dict[str, Any] = {
        "offer_id": visit.request.path_params["offer_id"],
        "image": text(form, "image"),
        "command": text(form, "command"),
        "label": text(form, "label"),
        "env": pairs(form.get("env")),
    }
    vm = await visit.api.post(visit.api.org("vms"), body)
    return f"/instances/{vm['id']}"


async def rent_again(visit: Visit, error: str | None = None, status: int = 200) -> Response:
    return await rent_form(visit, error, status, form=await visit.form())


def routes(wrap: Wrap) -> list[Route]:
    return [
        Route(NAV.path, wrap(page(view)), methods=["GET"]),
        Route("/marketplace/{offer_id:int}", wrap(page(rent_form)), methods=["GET"]),
        Route("/marketplace/{offer_id:int}", wrap(action(rent_again, rent)), methods=["POST"]),
    ]
