"""The overview: the org, its instances and clusters at a glance, GPUs in use as a chart, and
the last hour's events."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from starlette.responses import Response
from starlette.routing import Route

from gpuyard.console.pages.billing import usage_by_day
from gpuyard.console.pages.wrap import Wrap
from gpuyard.console.web import NavItem, Visit, page

NAV = NavItem("/overview", "Overview")
SPEND_DAYS = 30


async def view(visit: Visit, error: str | None = None, status: int = 200) -> Response:
    api = visit.api
    vms = await api.all_pages(api.org("vms"))
    clusters = await api.all_pages(api.org("clusters"))
    since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    events = (await api.all_pages(api.org("events"), since=since))[-15:][::-1]
    states = Counter(vm["actual_status"] or vm["intended_status"] for vm in vms)
    running = [vm for vm in vms if vm["actual_status"] == "running"]
    chart = {
        "type": "doughnut",
        "labels": list(states),
        "values": list(states.values()),
        "label": "Instances",
    }
    hosts = await api.all_pages("/v1/admin/hosts") if visit.is_operator else []
    billing = await api.get(api.org("billing"))
    spend = await usage_by_day(api, days=SPEND_DAYS)
    return visit.render(
        "overview.html",
        status=status,
        error=error,
        vms=vms,
        running_gpus=sum(vm["num_gpus"] for vm in running),
        spend_cents=sum(vm["price_cents_per_hour"] for vm in running),
        clusters=clusters,
        healthy=sum(1 for c in clusters if c["status"] == "healthy"),
        events=events,
        chart=chart if vms else None,
        hosts=hosts,
        fleet_gpus=sum(len(h["gpus"]) for h in hosts),
        billing=billing,
        spend=spend,
        fleet_used=sum(1 for h in hosts for g in h["gpus"] if g["allocated"]),
    )


def routes(wrap: Wrap) -> list[Route]:
    return [Route(NAV.path, wrap(page(view)), methods=["GET"])]
