"""API keys: create with scopes (the secret shown once, with a copy button), list, revoke."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from gpuyard.console.pages.wrap import Wrap
from gpuyard.console.web import NavItem, Visit, action, page, text
from gpuyard.core.principal import Scope

NAV = NavItem("/api-keys", "API keys")


async def view(
    visit: Visit, error: str | None = None, status: int = 200, created: dict[str, Any] | None = None
) -> Response:
    keys = await visit.api.all_pages(visit.api.org("api-keys"))
    scopes = [s.value for s in Scope if s is not Scope.OPERATOR or visit.is_operator]
    return visit.render(
        "api_keys.html", status=status, error=error, keys=keys, scopes=scopes, created=created
    )


async def create(visit: Visit) -> Response:
    fields = await visit.form()
    scopes = (await visit.request.form()).getlist("scopes")  # one per box ticked
    body = {
        "name": text(fields, "name") or "",
        "scopes": [s for s in scopes if isinstance(s, str)],
    }
    created = await visit.api.post(visit.api.org("api-keys"), body)
    return await view(visit, status=201, created=created)  # the secret, this once


async def revoke(visit: Visit) -> str:
    await visit.api.delete(visit.api.org(f"api-keys/{visit.request.path_params['key_id']}"))
    return "/api-keys"


def routes(wrap: Wrap) -> list[Route]:
    return [
        Route(NAV.path, wrap(page(view)), methods=["GET"]),
        Route(NAV.path, wrap(action(view, create)), methods=["POST"]),
        Route("/api-keys/{key_id}/revoke", wrap(action(view, revoke)), methods=["POST"]),
    ]
