"""Operator: the price per GPU-hour of each GPU type (set, remove)."""

from __future__ import annotations

from starlette.responses import Response
from starlette.routing import Route

from gpuyard.console.pages.wrap import Wrap
from gpuyard.console.web import InvalidForm, NavItem, Visit, action, integer, page

NAV = NavItem("/prices", "Prices", operator=True)


async def view(visit: Visit, error: str | None = None, status: int = 200) -> Response:
    prices = await visit.api.get("/v1/admin/prices")
    gpus = await visit.api.get("/v1/gpus")
    return visit.render(
        "prices.html", status=status, error=error, prices=prices, gpu_types=gpus["data"]
    )


async def set_price(visit: Visit) -> str:
    form = await visit.form()
    cents = integer(form, "cents", "Cents per GPU-hour")
    if cents is None:
        raise InvalidForm("Cents per GPU-hour is required")
    gpu_type = form.get("gpu_type", "").strip()
    await visit.api.put(f"/v1/admin/prices/{gpu_type}", {"cents_per_gpu_hour": cents})
    return "/prices"


async def remove(visit: Visit) -> str:
    await visit.api.delete(f"/v1/admin/prices/{visit.request.path_params['gpu_type']}")
    return "/prices"


def routes(wrap: Wrap) -> list[Route]:
    return [
        Route(NAV.path, wrap(page(view)), methods=["GET"]),
        Route(NAV.path, wrap(action(view, set_price)), methods=["POST"]),
        Route("/prices/{gpu_type}/remove", wrap(action(view, remove)), methods=["POST"]),
    ]
