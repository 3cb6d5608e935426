"""Operator: hosts with their GPUs and state; cordon, uncordon, drain, remove."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.responses import Response
from starlette.routing import Route

from gpuyard.console.pages.wrap import Wrap
from gpuyard.console.web import NavItem, Visit, action, page

NAV = NavItem("/hosts", "Hosts", operator=True)


async def view(visit: Visit, error: str | None = None, status: int = 200) -> Response:
    hosts = await visit.api.all_pages("/v1/admin/hosts")
    return visit.render("hosts.html", status=status, error=error, hosts=hosts)


def _change(verb: str) -> Callable[[Visit], Awaitable[str]]:
    async def act(visit: Visit) -> str:
        await visit.api.post(f"/v1/admin/hosts/{visit.request.path_params['host_id']}/{verb}")
        return "/hosts"

    return act


async def remove(visit: Visit) -> str:
    form = await visit.form()
    path = f"/v1/admin/hosts/{visit.request.path_params['host_id']}"
    await visit.api.call("DELETE", path, params={"force": "true"} if form.get("force") else None)
    return "/hosts"


def routes(wrap: Wrap) -> list[Route]:
    one = "/hosts/{host_id}"
    found = [
        Route(NAV.path, wrap(page(view)), methods=["GET"]),
        Route(one + "/remove", wrap(action(view, remove)), methods=["POST"]),
    ]
    for verb in ("cordon", "uncordon", "drain"):
        found.append(Route(f"{one}/{verb}", wrap(action(view, _change(verb))), methods=["POST"]))
    return found
