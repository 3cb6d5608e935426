"""Billing and usage: the balance, month-to-date spend and burn rate (live), usage by day as a
chart, and the ledger (filtered, a page at a time); for the operator, crediting an org."""

from __future__ import annotations

import re
import uuid
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from gpuyard.console.api import Api, ApiError
from gpuyard.console.pages.wrap import Wrap
from gpuyard.console.web import InvalidForm, NavItem, Visit, action, cents, page, text

NAV = NavItem("/billing", "Billing")
LEDGER_PAGE = 50
_FILTERS = ("kind", "resource_id", "since", "until")
_KEY = re.compile(r"[A-Za-z0-9_-]{1,200}")  # what a form's Idempotency-Key may be


async def usage_by_day(api: Api, days: int | None = None) -> dict[str, Any]:
    """The org's charged usage per UTC day, this month (the API's default) or the last ``days``
    days by the API's clock, every day of the span present (a gap is 0): a bar chart's spec in
    dollars, with totals."""
    usage = await api.get(api.org("usage"))
    if days is not None:
        today = datetime.combine(_day(usage["until"]), datetime.min.time(), tzinfo=UTC)
        since = today - timedelta(days=days - 1)
        usage = await api.get(api.org("usage"), since=since.isoformat(), until=usage["until"])
    cost: dict[str, int] = defaultdict(int)
    for line in usage["data"]:
        cost[line["day"]] += line["cost_cents"]
    first = _day(usage["since"])
    span = (_day(usage["until"]) - first).days + 1
    labels = [(first + timedelta(days=i)).isoformat() for i in range(max(min(span, 366), 1))]
    return {
        "cost_cents": usage["cost_cents"],
        "gpu_seconds": usage["gpu_seconds"],
        "lines": usage["data"],
        "chart": {
            "type": "bar",
            "labels": labels,
            "unit": "USD",
            "series": [{"label": "Spend ($)", "values": [cost[d] / 100 for d in labels]}],
        },
        "described": ", ".join(f"{d} ${cost[d] / 100:.2f}" for d in labels if cost[d]) or "none",
    }


def _day(stamp: str) -> date:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(UTC).date()


async def view(visit: Visit, error: str | None = None, status: int = 200) -> Response:
    api = visit.api
    query = visit.request.query_params
    filters = {name: query.get(name, "").strip() for name in _FILTERS}
    summary = await api.get(api.org("billing"))
    usage = await usage_by_day(api)
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
    if key is not None and not _KEY.fullmatch(key):
        raise InvalidForm("The form was damaged (its idempotency key): reload the page.")
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
