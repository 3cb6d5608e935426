"""SSH keys: add a public key, list with fingerprints, delete."""

from __future__ import annotations

from starlette.responses import Response
from starlette.routing import Route

from gpuyard.console.pages.wrap import Wrap
from gpuyard.console.web import NavItem, Visit, action, page, text

NAV = NavItem("/ssh-keys", "SSH keys")


async def view(
    visit: Visit, error: str | None = None, status: int = 200, form: dict[str, str] | None = None
) -> Response:
    keys = await visit.api.all_pages(visit.api.org("ssh-keys"))
    return visit.render("ssh_keys.html", status=status, error=error, keys=keys, form=form or {})


async def view_again(visit: Visit, error: str | None = None, status: int = 200) -> Response:
    return await view(visit, error, status, form=await visit.form())


async def add(visit: Visit) -> str:
    form = await visit.form()
    body = {"public_key": form.get("public_key", "").strip(), "name": text(form, "name")}
    await visit.api.post(visit.api.org("ssh-keys"), body)
    return "/ssh-keys"


async def delete(visit: Visit) -> str:
    await visit.api.delete(visit.api.org(f"ssh-keys/{visit.request.path_params['key_id']}"))
    return "/ssh-keys"


def routes(wrap: Wrap) -> list[Route]:
    return [
        Route(NAV.path, wrap(page(view)), methods=["GET"]),
        Route(NAV.path, wrap(action(view_again, add)), methods=["POST"]),
        Route("/ssh-keys/{key_id}/delete", wrap(action(view, delete)), methods=["POST"]),
    ]
