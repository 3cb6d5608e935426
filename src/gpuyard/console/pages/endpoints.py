"""Serverless endpoints: the list, create with the autoscaler's knobs, and one endpoint's page
(its workers by state with their load and perf, live; its workergroups: add, change, remove;
the autoscaler's steps as a chart and a log; change its knobs or state; delete)."""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from gpuyard.console.pages.wrap import Wrap
from gpuyard.console.web import InvalidForm, NavItem, Visit, action, integer, page, text

NAV = NavItem("/endpoints", "Endpoints")
STATES = ("active", "suspended", "stopped")
# The knobs a form shows, with their labels; whole numbers for the two counts.
KNOBS = {
    "min_load": "Minimum load (perf units/s)",
    "target_util": "Target utilisation (0-1]",
    "cold_mult": "Cold multiplier",
    "cold_workers": "Cold workers",
    "max_workers": "Maximum workers",
    "max_queue_time": "Maximum queue time (s)",
    "target_queue_time": "Target queue time (s)",
    "inactivity_timeout": "Inactivity timeout (s)",
}
_WHOLE = {"cold_workers", "max_workers"}
WORKER_ORDER = ("idle", "loading", "creating", "starting", "stopping", "stopped", "error")


def number(form: dict[str, str], name: str, label: str) -> float | None:
    value = text(form, name)
    if value is None:
        return None
    try:
        found = float(value)
    except ValueError:
        found = math.nan
    if not math.isfinite(found):
        raise InvalidForm(f"{label} must be a number")
    return found


def knobs(form: dict[str, str]) -> dict[str, Any]:
    """The knobs typed into the form; an empty field is left to the API (default or as is)."""
    body: dict[str, Any] = {}
    for name, label in KNOBS.items():
        value = integer(form, name, label) if name in _WHOLE else number(form, name, label)
        if value is not None:
            body[name] = value
    return body


async def view(visit: Visit, error: str | None = None, status: int = 200) -> Response:
    endpoints = await visit.api.all_pages(visit.api.org("endpoints"))
    form = await visit.form() if error else {}
    return visit.render(
        "endpoints.html", status=status, error=error, endpoints=endpoints, knobs=KNOBS, form=form
    )


async def create(visit: Visit) -> str:
    form = await visit.form()
    body = {"name": form.get("name", "").strip(), **knobs(form)}
    endpoint = await visit.api.post(visit.api.org("endpoints"), body)
    return f"/endpoints/{endpoint['id']}"


def _endpoint(visit: Visit, rest: str = "") -> str:
    return visit.api.org(f"endpoints/{visit.request.path_params['endpoint_id']}{rest}")


def scaling_chart(steps: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The autoscaler's steps as a line chart: the load it planned for and the workers it
    aimed at, at each step it took. The API keeps no sampled history of load, so this is what
    there is over time; the workers' load now is in the table."""
    if not steps:
        return None
    series = {
        "predicted_load": "Predicted load",
        "active_target": "Active workers aimed at",
        "loaded_target": "Loaded workers aimed at",
    }
    return {
        "type": "line",
        "stepped": True,
        "labels": [e["created_at"][11:19] for e in steps],
        "series": [
            {"label": label, "values": [e["data"].get(name) for e in steps]}
            for name, label in series.items()
        ],
    }


async def detail(visit: Visit, error: str | None = None, status: int = 200) -> Response:
    api = visit.api
    endpoint = await api.get(_endpoint(visit))
    workers = await api.get(_endpoint(visit, "/workers"))
    groups = await api.all_pages(api.org("workergroups"), endpoint_id=endpoint["id"])
    day_ago = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    subjects = {endpoint["id"], *(g["id"] for g in groups)}
    events = [
        e
        for e in await api.all_pages(api.org("events"), since=max(endpoint["created_at"], day_ago))
        if e["subject_id"] in subjects
    ]
    steps = [e for e in events if e["type"] == "endpoint.scaled"][-60:]
    by_state = Counter(w["status"] for w in workers)
    ready = [w for w in workers if w["status"] == "idle"]
    order = {s: i for i, s in enumerate(WORKER_ORDER)}
    return visit.render(
        "endpoint.html",
        status=status,
        error=error,
        endpoint=endpoint,
        workers=sorted(workers, key=lambda w: (order.get(w["status"], 99), w["id"])),
        by_state=sorted(by_state.items(), key=lambda kv: order.get(kv[0], 99)),
        load=sum(w["cur_load"] for w in workers),
        capacity=sum(w["perf"] for w in ready),
        groups=groups,
        events=events[-30:][::-1],
        chart=scaling_chart(steps),
        knobs=KNOBS,
        states=STATES,
        form=await visit.form() if error and visit.request.method == "POST" else {},
    )


async def update(visit: Visit) -> str:
    form = await visit.form()
    body = {**knobs(form), "name": text(form, "name"), "state": text(form, "state")}
    endpoint = await visit.api.patch(
        _endpoint(visit), {k: v for k, v in body.items() if v is not None}
    )
    return f"/endpoints/{endpoint['id']}"


async def delete(visit: Visit) -> str:
    await visit.api.delete(_endpoint(visit))
    return "/endpoints"


def _group_body(form: dict[str, str]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "template_hash": text(form, "template_hash"),
        "launch_args": text(form, "launch_args"),
        "search_params": text(form, "search_params"),
        "gpu_ram": number(form, "gpu_ram", "GPU memory"),
        "test_workers": integer(form, "test_workers", "Test workers"),
    }
    return {k: v for k, v in body.items() if v is not None}


async def add_group(visit: Visit) -> str:
    endpoint_id = visit.request.path_params["endpoint_id"]
    body = {"endpoint_id": endpoint_id, **_group_body(await visit.form())}
    await visit.api.post(visit.api.org("workergroups"), body)
    return f"/endpoints/{endpoint_id}"


async def change_group(visit: Visit) -> str:
    group = visit.request.path_params["workergroup_id"]
    await visit.api.patch(visit.api.org(f"workergroups/{group}"), _group_body(await visit.form()))
    return f"/endpoints/{visit.request.path_params['endpoint_id']}"


async def remove_group(visit: Visit) -> str:
    group = visit.request.path_params["workergroup_id"]
    await visit.api.delete(visit.api.org(f"workergroups/{group}"))
    return f"/endpoints/{visit.request.path_params['endpoint_id']}"


def routes(wrap: Wrap) -> list[Route]:
    one = "/endpoints/{endpoint_id}"
    group = one + "/workergroups/{workergroup_id}"
    return [
        Route(NAV.path, wrap(page(view)), methods=["GET"]),
        Route(NAV.path, wrap(action(view, create)), methods=["POST"]),
        Route(one, wrap(page(detail)), methods=["GET"]),
        Route(one, wrap(action(detail, update)), methods=["POST"]),
        Route(one + "/delete", wrap(action(detail, delete)), methods=["POST"]),
        Route(one + "/workergroups", wrap(action(detail, add_group)), methods=["POST"]),
        Route(group, wrap(action(detail, change_group)), methods=["POST"]),
        Route(group + "/delete", wrap(action(detail, remove_group)), methods=["POST"]),
    ]
