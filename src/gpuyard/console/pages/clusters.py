"""Inference clusters: the list with live health, create (the seed's fields), and one cluster's
page (replicas and their health, scale, roll a new container, delete, its events)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from gpuyard.console.pages.wrap import Wrap
from gpuyard.console.web import NavItem, Visit, action, integer, page, pairs, text

NAV = NavItem("/clusters", "Clusters")


async def view(
    visit: Visit, error: str | None = None, status: int = 200, form: dict[str, str] | None = None
) -> Response:
    clusters = await visit.api.all_pages(visit.api.org("clusters"))
    gpus = await visit.api.get("/v1/gpus")
    return visit.render(
        "clusters.html",
        status=status,
        error=error,
        clusters=clusters,
        gpu_types=gpus["data"],
        form=form or {},
    )


async def view_again(visit: Visit, error: str | None = None, status: int = 200) -> Response:
    return await view(visit, error, status, form=await visit.form())


async def create(visit: Visit) -> str:
    form = await visit.form()
    body: dict[str, Any] = {
        "name": form.get("name", "").strip(),
        "gpu_type": form.get("gpu_type", ""),
        "container": form.get("container", "").strip(),
        "env": pairs(form.get("env")),
        "command": text(form, "command"),
        "health_path": text(form, "health_path") or "/health",
        "models": [m.strip() for m in form.get("models", "").split(",") if m.strip()],
    }
    for name, label in (
        ("replicas", "Replicas"),
        ("gpus_per_replica", "GPUs per replica"),
        ("port", "Port"),
    ):
        if (number := integer(form, name, label)) is not None:
            body[name] = number
    cluster = await visit.api.post(visit.api.org("clusters"), body)
    return f"/clusters/{cluster['id']}"


async def detail(visit: Visit, error: str | None = None, status: int = 200) -> Response:
    cluster_id = visit.request.path_params["cluster_id"]
    cluster = await visit.api.get(visit.api.org(f"clusters/{cluster_id}"))
    # The org's events of the last day (the API filters by type and time, not by subject).
    day_ago = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    since = max(cluster["created_at"], day_ago)
    events = [
        e
        for e in await visit.api.all_pages(visit.api.org("events"), since=since)
        if e["subject_id"] == cluster_id
    ][-20:][::-1]
    return visit.render("cluster.html", status=status, error=error, cluster=cluster, events=events)


async def update(visit: Visit) -> str:
    cluster_id = visit.request.path_params["cluster_id"]
    form = await visit.form()
    body: dict[str, Any] = {}
    if (replicas := integer(form, "replicas", "Replicas")) is not None:
        body["replicas"] = replicas
    if container := text(form, "container"):
        body["container"] = container
    await visit.api.patch(visit.api.org(f"clusters/{cluster_id}"), body)
    return f"/clusters/{cluster_id}"


async def delete(visit: Visit) -> str:
    await visit.api.delete(visit.api.org(f"clusters/{visit.request.path_params['cluster_id']}"))
    return "/clusters"


def routes(wrap: Wrap) -> list[Route]:
    one = "/clusters/{cluster_id}"
    return [
        Route(NAV.path, wrap(page(view)), methods=["GET"]),
        Route(NAV.path, wrap(action(view_again, create)), methods=["POST"]),
        Route(one, wrap(page(detail)), methods=["GET"]),
        Route(one, wrap(action(detail, update)), methods=["POST"]),
        Route(one + "/delete", wrap(action(detail, delete)), methods=["POST"]),
    ]
