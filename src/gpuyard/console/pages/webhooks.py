"""Webhooks: endpoints (create with event filters, the signing secret shown once, update,
delete, rotate the secret, send a test event), their deliveries (live, by status) and one
delivery's attempts (redeliver)."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from gpuyard.console.pages.wrap import Wrap
from gpuyard.console.web import NavItem, Visit, action, page, text
from gpuyard.core.event_types import GROUPS

NAV = NavItem("/webhooks", "Webhooks")
DELIVERIES_PAGE = 50
STATUSES = ("pending", "succeeded", "failed")


def _path(visit: Visit, rest: str = "") -> str:
    hook = visit.request.path_params["webhook_id"]
    return visit.api.org(f"webhooks/{hook}{rest}")


async def _event_types(visit: Visit) -> list[str]:
    """The ticked groups (``instance.*``) and the typed types (``billing.low_balance``)."""
    ticked = (await visit.request.form()).getlist("groups")
    typed = (await visit.form()).get("event_types", "")
    named = [t.strip() for t in typed.replace("\n", ",").split(",") if t.strip()]
    return [t for t in ticked if isinstance(t, str)] + named


def _form_of(hook: dict[str, Any]) -> dict[str, Any]:
    """An endpoint's fields as its edit form shows them: whole groups ticked, the rest typed."""
    groups = [t for t in hook["event_types"] if t.endswith(".*")]
    return {
        "url": hook["url"],
        "description": hook["description"] or "",
        "groups": groups,
        "event_types": ", ".join(t for t in hook["event_types"] if t not in groups),
    }


async def _posted(visit: Visit) -> dict[str, Any]:
    form = await visit.form()
    ticked = (await visit.request.form()).getlist("groups")
    return {**form, "groups": [t for t in ticked if isinstance(t, str)]}


async def view(
    visit: Visit,
    error: str | None = None,
    status: int = 200,
    created: dict[str, Any] | None = None,
) -> Response:
    hooks = await visit.api.all_pages(visit.api.org("webhooks"))
    form = await _posted(visit) if error else {}
    return visit.render(
        "webhooks.html",
        status=status,
        error=error,
        hooks=hooks,
        created=created,
        groups=GROUPS,
        form=form,
    )


async def create(visit: Visit) -> Response:
    form = await visit.form()
    body = {
        "url": form.get("url", "").strip(),
        "event_types": await _event_types(visit),
        "description": text(form, "description"),
    }
    created = await visit.api.post(visit.api.org("webhooks"), body)
    return await view(visit, status=201, created=created)  # the secret, this once


async def detail(
    visit: Visit,
    error: str | None = None,
    status: int = 200,
    secret: str | None = None,
) -> Response:
    hook = await visit.api.get(_path(visit))
    query = visit.request.query_params
    shown = query.get("status") if query.get("status") in STATUSES else None
    deliveries = await visit.api.get(
        _path(visit, "/deliveries"), status=shown, limit=DELIVERIES_PAGE, cursor=query.get("cursor")
    )
    posted = await _posted(visit) if error and visit.request.method == "POST" else {}
    form = posted if "url" in posted else _form_of(hook)  # the edit form as typed, if refused
    return visit.render(
        "webhook.html",
        status=status,
        error=error,
        hook=hook,
        deliveries=deliveries["data"],
        next_cursor=deliveries.get("next_cursor"),
        shown=shown,
        statuses=STATUSES,
        new_secret=secret,
        groups=GROUPS,
        form=form,
    )


async def update(visit: Visit) -> str:
    form = await visit.form()
    body = {
        "url": form.get("url", "").strip(),
        "event_types": await _event_types(visit),
        "description": form.get("description", "").strip() or None,
        "enabled": form.get("enabled") == "on",
    }
    hook = await visit.api.patch(_path(visit), body)
    return f"/webhooks/{hook['id']}"


async def delete(visit: Visit) -> str:
    await visit.api.delete(_path(visit))
    return "/webhooks"


async def send_test(visit: Visit) -> str:
    delivery = await visit.api.post(_path(visit, "/test"))
    return f"/webhooks/{delivery['endpoint_id']}/deliveries/{delivery['id']}"


async def rotate(visit: Visit) -> Response:
    rotated = await visit.api.post(_path(visit, "/rotate-secret"))
    return await detail(visit, status=200, secret=rotated["secret"])


async def attempts(visit: Visit, error: str | None = None, status: int = 200) -> Response:
    delivery_id = visit.request.path_params["delivery_id"]
    hook = await visit.api.get(_path(visit))
    found = await visit.api.get(_path(visit, f"/deliveries/{delivery_id}/attempts"))
    return visit.render(
        "delivery.html",
        status=status,
        error=error,
        hook=hook,
        delivery=found["delivery"],
        attempts=found["data"],
    )


async def redeliver(visit: Visit) -> str:
    delivery_id = visit.request.path_params["delivery_id"]
    delivery = await visit.api.post(_path(visit, f"/deliveries/{delivery_id}/redeliver"))
    return f"/webhooks/{delivery['endpoint_id']}/deliveries/{delivery['id']}"


def routes(wrap: Wrap) -> list[Route]:
    one = "/webhooks/{webhook_id}"
    delivery = one + "/deliveries/{delivery_id}"
    return [
        Route(NAV.path, wrap(page(view)), methods=["GET"]),
        Route(NAV.path, wrap(action(view, create)), methods=["POST"]),
        Route(one, wrap(page(detail)), methods=["GET"]),
        Route(one, wrap(action(detail, update)), methods=["POST"]),
        Route(one + "/delete", wrap(action(detail, delete)), methods=["POST"]),
        Route(one + "/test", wrap(action(detail, send_test)), methods=["POST"]),
        Route(one + "/rotate-secret", wrap(action(detail, rotate)), methods=["POST"]),
        Route(delivery, wrap(page(attempts)), methods=["GET"]),
        Route(delivery + "/redeliver", wrap(action(attempts, redeliver)), methods=["POST"]),
    ]
