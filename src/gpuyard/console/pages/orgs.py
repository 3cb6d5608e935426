"""Operator: organizations (create, suspend, reactivate, issue a first key)."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from gpuyard.console.pages.wrap import Wrap
from gpuyard.console.web import NavItem, Visit, action, page, text

NAV = NavItem("/orgs", "Organizations", operator=True)


async def view(
    visit: Visit, error: str | None = None, status: int = 200, created: dict[str, Any] | None = None
) -> Response:
    orgs = await visit.api.all_pages("/v1/admin/orgs")
    return visit.render("orgs.html", status=status, error=error, orgs=orgs, created=created)


async def create(visit: Visit) -> str:
    form = await visit.form()
    await visit.api.post(
        "/v1/admin/orgs", {"name": form.get("name", "").strip(), "slug": text(form, "slug")}
    )
    return "/orgs"


async def suspend(visit: Visit) -> str:
    form = await visit.form()
    org_id = visit.request.path_params["org_id"]
    await visit.api.post(f"/v1/admin/orgs/{org_id}/suspend", {"reason": text(form, "reason")})
    return "/orgs"


async def reactivate(visit: Visit) -> str:
    await visit.api.post(f"/v1/admin/orgs/{visit.request.path_params['org_id']}/reactivate")
    return "/orgs"


async def issue_key(visit: Visit) -> Response:
    org_id = visit.request.path_params["org_id"]
    created = await visit.api.post(
        f"/v1/admin/orgs/{org_id}/api-keys", {"name": "console", "scopes": ["org:write"]}
    )
    return await view(visit, status=201, created=created)


def routes(wrap: Wrap) -> list[Route]:
    one = "/orgs/{org_id}"
    return [
        Route(NAV.path, wrap(page(view)), methods=["GET"]),
        Route(NAV.path, wrap(action(view, create)), methods=["POST"]),
        Route(one + "/suspend", wrap(action(view, suspend)), methods=["POST"]),
        Route(one + "/reactivate", wrap(action(view, reactivate)), methods=["POST"]),
        Route(one + "/api-keys", wrap(action(view, issue_key)), methods=["POST"]),
    ]
