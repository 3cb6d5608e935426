"""Instances: the list with live status, and one instance's page (status, logs that follow,
stop, start, restart, destroy, label)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.responses import Response
from starlette.routing import Route

from gpuyard.console.api import ApiError
from gpuyard.console.pages.wrap import Wrap
from gpuyard.console.web import NavItem, Visit, action, page, text

NAV = NavItem("/instances", "Instances")
LOG_LINES = 200


async def view(visit: Visit, error: str | None = None, status: int = 200) -> Response:
    vms = await visit.api.all_pages(visit.api.org("vms"))
    return visit.render("instances.html", status=status, error=error, vms=vms)


async def detail(visit: Visit, error: str | None = None, status: int = 200) -> Response:
    vm_id = visit.request.path_params["vm_id"]
    vm = await visit.api.get(visit.api.org(f"vms/{vm_id}"))
    try:
        logs = await visit.api.get(visit.api.org(f"vms/{vm_id}/logs"), tail=LOG_LINES)
    except ApiError as exc:
        if exc.signed_out:
            raise
        logs = None
    return visit.render("instance.html", status=status, error=error, vm=vm, logs=logs)


def _change(verb: str) -> Callable[[Visit], Awaitable[str]]:
    async def act(visit: Visit) -> str:
        vm_id = visit.request.path_params["vm_id"]
        await visit.api.post(visit.api.org(f"vms/{vm_id}/{verb}"))
        return f"/instances/{vm_id}"

    return act


async def destroy(visit: Visit) -> str:
    await visit.api.delete(visit.api.org(f"vms/{visit.request.path_params['vm_id']}"))
    return "/instances"


async def label(visit: Visit) -> str:
    vm_id = visit.request.path_params["vm_id"]
    form = await visit.form()
    await visit.api.patch(visit.api.org(f"vms/{vm_id}"), {"label": text(form, "label")})
    return f"/instances/{vm_id}"


def routes(wrap: Wrap) -> list[Route]:
    one = "/instances/{vm_id}"
    found = [
        Route(NAV.path, wrap(page(view)), methods=["GET"]),
        Route(one, wrap(page(detail)), methods=["GET"]),
        Route(one + "/destroy", wrap(action(detail, destroy)), methods=["POST"]),
        Route(one + "/label", wrap(action(detail, label)), methods=["POST"]),
    ]
    for verb in ("stop", "start", "restart"):
        found.append(Route(f"{one}/{verb}", wrap(action(detail, _change(verb))), methods=["POST"]))
    return found
