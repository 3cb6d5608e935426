"""Operator: join tokens (create, with the ``gpuyard agent`` command to paste; revoke)."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from gpuyard.console.pages.wrap import Wrap
from gpuyard.console.web import NavItem, Visit, action, page, text

NAV = NavItem("/join-tokens", "Join tokens", operator=True)


async def view(
    visit: Visit, error: str | None = None, status: int = 200, created: dict[str, Any] | None = None
) -> Response:
    tokens = await visit.api.all_pages("/v1/admin/join-tokens")
    server = str(visit.request.base_url).rstrip("/")
    return visit.render(
        "join_tokens.html",
        status=status,
        error=error,
        tokens=tokens,
        created=created,
        command=f"gpuyard agent --server {server} --token {created['token']}" if created else "",
    )


async def create(visit: Visit) -> Response:
    form = await visit.form()
    created = await visit.api.post("/v1/admin/join-tokens", {"name": text(form, "name") or ""})
    return await view(visit, status=201, created=created)


async def revoke(visit: Visit) -> str:
    await visit.api.delete(f"/v1/admin/join-tokens/{visit.request.path_params['token_id']}")
    return "/join-tokens"


def routes(wrap: Wrap) -> list[Route]:
    return [
        Route(NAV.path, wrap(page(view)), methods=["GET"]),
        Route(NAV.path, wrap(action(view, create)), methods=["POST"]),
        Route("/join-tokens/{token_id}/revoke", wrap(action(view, revoke)), methods=["POST"]),
    ]
