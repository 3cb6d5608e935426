"""Billing and usage: the balance, month-to-date spend and burn rate (live), usage by day as a
chart, and the ledger (filtered, a page at a time); for the operator, crediting an org."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from gpuyard.console.api import Api, ApiError
from gpuyard.console.pages.wrap import Wrap
from gpuyard.console.web import NavItem, Visit, action, cents, page, text

NAV = NavItem("/billing", "Billing")
LEDGER_PAGE = 50
_FILTERS = ("kind", "resource_id", "since", "until")


async def usage_by_day(api: Api, since: datetime) -> dict[str, Any]:
    """The org's charged usage per UTC day since ``since``, every day present (a gap is 0): a
    bar chart's spec in dollars and GPU-hours, with the totals."""
    usage = await api.get(api.org("usage"), since=since.isoformat())
    cost: dict[str, int] = defaultdict(int)
    seconds: dict[str, int] = defaultdict(int)
    for line in usage["data"]:
        cost[line["day"]] += line["cost_cents"]
        seconds[line["day"]] += line["gpu_seconds"]
    first: date = since.date()
    days = [(first + timedelta(days=i)).isoformat() for i in range((_today() - first).days + 1)]
    return {
        "cost_cents": usage["cost_cents"],
        "gpu_seconds": usage["gpu_seconds"],
        "lines": usage["data"],
        "chart": {
            "type": "bar",
            "labels": days,
            "unit": "USD",
            "series": [{"label": "Spend ($)", "values": [cost[d] / 100 for d in days]}],
        },
        "described": ", ".join(f"{d} ${cost[d] / 100:.2f}" for d in days if cost[d]) or "none",
    }


def _today() -> date:
    return datetime.now(UTC).date()


def month_start() -> datetime:
    now = datetime.now(UTC)
    return datetime(now.year, now.month, 1, tzinfo=UTC)


async def view(visit: Visit, error: str | None = None, status: int = 200) -> Response:
    api = visit.api
    query = visit.request.query_params
    filters = {name: query.get(name, "").strip() for name in _FILTERS}
    summary = await api.get(api.org("billing"))
    usage = await usage_by_day(api, month_start())
    ledger_error = None
    try:
        ledger = await api.get(
            api.org("billing/ledger"), limit=LEDGER_PAGE, cursor=query.get("cursor"), **filters
        )
    except ApiError as exc:  # a bad filter: the API's words above the ledger, the rest shown
        if exc.signed_out:
            raise
        ledger_error, ledger = exc.message, {"data": [], "next_cursor": None}
    return visit.render(
        "billing.html",
        status=status,
        error=error or ledger_error,
        summary=summary,
        usage=usage,
        ledger=ledger["data"],
        next_cursor=ledger.get("next_cursor"),
        filters=filters,
        paged=bool(query.get("cursor")),
    )


async def credit_form(
    visit: Visit,
    error: str | None = None,
    status: int = 200,
    credited: dict[str, Any] | None = None,
) -> Response:
    """Operator: credit an org. Each rendering of the form carries a fresh Idempotency-Key, so
    a double submit (or a resent POST) credits once; a refused form keeps its key and fields."""
    org_id = visit.request.path_params["org_id"]
    org = await visit.api.get(f"/v1/admin/orgs/{org_id}")
    form = await visit.form() if visit.request.method == "POST" and not credited else {}
    return visit.render(
        "credit.html",
        status=status,
        error=error,
        org=org,
        credited=credited,
        form=form,
        idempotency_key=form.get("idempotency_key") or uuid.uuid4().hex,
    )


async def credit(visit: Visit) -> Response:
    org_id = visit.request.path_params["org_id"]
    form = await visit.form()
    body: dict[str, Any] = {"currency": "usd", "description": text(form, "description")}
    amount = cents(form, "amount", "Amount")
    if amount is not None:
        body["amount_cents"] = amount
    key = text(form, "idempotency_key")
    entry = await visit.api.post(
        f"/v1/admin/orgs/{org_id}/credits",
        body,
        headers={"Idempotency-Key": key} if key else None,
    )
    return await credit_form(visit, status=201, credited=entry)


def routes(wrap: Wrap) -> list[Route]:
    one = "/orgs/{org_id}/credit"
    return [
        Route(NAV.path, wrap(page(view)), methods=["GET"]),
        Route(one, wrap(page(credit_form)), methods=["GET"]),
        Route(one, wrap(action(credit_form, credit)), methods=["POST"]),
    ]
