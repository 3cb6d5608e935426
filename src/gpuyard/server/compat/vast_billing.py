"""Vast billing history: ``vastai show invoices`` (``GET /api/v0/users/me/invoices``) and
``vastai show invoices-v1`` (``--invoices``: ``GET /api/v1/invoices/``; ``--charges``:
``GET /api/v0/charges/``), over the org's statement (services/statements.py): payments in (and
credit transferred between orgs) are invoices, and charges are by UTC day and resource. Dollars,
as the dialect speaks."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Query

from gpuyard.core import money
from gpuyard.core.errors import InvalidRequest
from gpuyard.server.compat.vast_scopes import Reader
from gpuyard.server.deps import ClockDep, Session
from gpuyard.server.schemas.vast import vast_errors
from gpuyard.server.schemas.vast_billing import (
    CurrentCharges,
    HistoryItem,
    HistoryPage,
    InvoiceRow,
    Invoices,
)
from gpuyard.server.services import ledger, statements

router = APIRouter(tags=["vast"])
T = TypeVar("T")
# What ``--charge-type`` asks for, by the resource kinds charged.
CHARGE_TYPES = {
    "instance": "instance",
    "replica": "instance",
    "instance_disk": "volume",
    "worker_disk": "volume",
    "worker": "serverless",
    "model": "serverless",
}
# ``--invoice-type``'s services, by where a payment came from.
SERVICES = {"stripe": "stripe_payments", "operator": "transfer"}
SOURCE_NAMES = {"replica": "cluster", "worker": "endpoint", "worker_disk": "endpoint"}


def _when(value: float, param: str) -> datetime:
    try:
        return datetime.fromtimestamp(value, tz=UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise InvalidRequest(f"{param} is not a UNIX time", param=param) from exc


def _span(since: datetime, until: datetime) -> tuple[datetime, datetime]:
    if since > until:
        raise InvalidRequest("the start date must not be after the end date", param="start_date")
    return since, until


def _dollars(cents: int) -> float:
    return money.dollars(cents)


def _unix(when: datetime) -> int:
    return int(when.timestamp())


def _what(c: statements.Charge) -> tuple[str, float, float]:
    """A charge's description, its quantity and the rate per unit, in dollars."""
    dollars = _dollars(c.cost_cents)
    if c.resource_kind == "model":
        used = [f"{c.input_tokens} input and {c.output_tokens} output tokens"]
        if c.characters:
            used.append(f"{c.characters} characters")
        quantity = float(c.input_tokens + c.output_tokens + c.characters)
        return f"{c.model}: {', '.join(used)}", quantity, _rate(dollars, quantity)
    name = _name(c)
    if c.resource_kind.endswith("_disk"):
        return f"{name} disk kept while stopped", 0.0, dollars
    hours = round(c.gpu_seconds / 3600, 4)
    return f"{name} GPU time: {c.gpu_seconds} GPU-seconds", hours, _rate(dollars, hours)


def _rate(dollars: float, quantity: float) -> float:
    return round(dollars / quantity, 6) if quantity else dollars


def _name(c: statements.Charge) -> str:
    if c.instance_number is not None:
        return f"instance {c.instance_number}"
    kind = SOURCE_NAMES.get(c.resource_kind, c.resource_kind)
    return f"{kind} {c.resource_id}"


@router.get("/api/v0/users/me/invoices", response_model=Invoices, responses=vast_errors(403))
@router.get("/api/v0/users/me/invoices/", response_model=Invoices, include_in_schema=False)
async def invoices(
    principal: Reader,
    session: Session,
    clock: ClockDep,
    sdate: Annotated[float | None, Query(description="UNIX time; default a day ago")] = None,
    edate: Annotated[float | None, Query(description="UNIX time; default now")] = None,
    inc_charges: Annotated[bool, Query(description="false: payments only")] = True,
    owner: Annotated[str | None, Query(description="Always the caller ('me')")] = None,
) -> Invoices:
    """Payments and charges over a window (`vastai show invoices`), oldest first."""
    now = clock.now()
    until = now if edate is None else _when(edate, "edate")
    since = until - timedelta(days=1) if sdate is None else _when(sdate, "sdate")
    since, until = _span(since, until)
    org_id = principal.org_id
    rows = [
        InvoiceRow(
            id=p.id,
            type="payment",
            description=p.description or f"credit ({p.source})",
            quantity=1.0,
            rate=_dollars(p.amount_cents),
            amount=-_dollars(p.amount_cents),
            timestamp=p.created_at.timestamp(),
        )
        for p in await statements.payments(session, org_id=org_id, since=since, until=until)
    ]
    if inc_charges:
        lines = await statements.charges(
            session, clock=clock, org_id=org_id, since=since, until=until
        )
        for c in lines:
            description, quantity, rate = _what(c)
            rows.append(
                InvoiceRow(
                    id=f"{c.day}:{c.resource_kind}:{c.resource_id or c.model}",
                    type="charge",
                    description=description,
                    quantity=quantity,
                    rate=rate,
                    amount=_dollars(c.cost_cents),
                    timestamp=c.start.timestamp(),
                    instance_id=c.instance_number,
                )
            )
    rows.sort(key=lambda r: r.timestamp)
    summary = await ledger.summary(session, clock=clock, org_id=org_id)
    spent = _dollars(summary.month_to_date_spend_cents)
    current = CurrentCharges(charges=spent, total=spent, credit=_dollars(summary.balance_cents))
    return Invoices(invoices=rows, current=current)


def _filters(
    raw: str | None, date_col: str, now: datetime
) -> tuple[datetime, datetime, set[str] | None]:
    """The window and the ``in`` list of ``select_filters`` (``{"day": {"gte": t, "lte": t},
    "type": {"in": [...]}}``; ``when`` and ``service`` for invoices)."""
    try:
        given = json.loads(raw) if raw else {}
    except ValueError as exc:
        raise InvalidRequest("select_filters is not JSON", param="select_filters") from exc
    if not isinstance(given, dict):
        raise InvalidRequest("select_filters must be a JSON object", param="select_filters")
    span = given.get(date_col) or {}
    if not isinstance(span, dict):
        raise InvalidRequest(f"select_filters.{date_col} must be an object", param=date_col)
    bounds = []
    for op in ("gte", "lte"):
        value = span.get(op)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise InvalidRequest(f"select_filters.{date_col}.{op} must be a number", param=op)
        bounds.append(value)
    until = _when(bounds[1], "lte") if bounds[1] is not None else now
    since = _when(bounds[0], "gte") if bounds[0] is not None else until - timedelta(days=7)
    kinds: set[str] | None = None
    for key, value in given.items():
        if key == date_col:
            continue
        wanted = value.get("in") if isinstance(value, dict) else None
        if not isinstance(wanted, list) or not all(isinstance(w, str) for w in wanted):
            raise InvalidRequest(
                f'select_filters.{key} must be {{"in": [names]}}', param="select_filters"
            )
        kinds = set(wanted)
    return (*_span(since, until), kinds)


def _page(
    items: Sequence[T], *, limit: int, after_token: str | None, latest_first: bool
) -> tuple[list[T], str | None]:
    """A page of ``items``; the token is the offset of the next, in base64."""
    ordered = list(reversed(items)) if latest_first else list(items)
    offset = 0
    if after_token:
        try:
            offset = int(json.loads(base64.urlsafe_b64decode(after_token))["offset"])
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise InvalidRequest(
                "after_token is not a token this API gave", param="after_token"
            ) from exc
    page = ordered[offset : offset + limit]
    more = offset + limit < len(ordered)
    token = base64.urlsafe_b64encode(json.dumps({"offset": offset + limit}).encode()).decode()
    return page, token if more else None


Limit = Annotated[int, Query(ge=1, le=100)]
Token = Annotated[str | None, Query(max_length=512, description="next_token of the last page")]
Filters = Annotated[str | None, Query(max_length=4096, description="JSON: window and types")]


@router.get("/api/v1/invoices/", response_model=HistoryPage, responses=vast_errors(403))
async def invoices_v1(
    principal: Reader,
    session: Session,
    clock: ClockDep,
    select_filters: Filters = None,
    latest_first: bool = False,
    limit: Limit = 20,
    after_token: Token = None,
) -> HistoryPage:
    """Payments in over a window (`vastai show invoices-v1 --invoices`)."""
    since, until, services = _filters(select_filters, "when", clock.now())
    found = await statements.payments(session, org_id=principal.org_id, since=since, until=until)
    if services is not None:
        found = [p for p in found if SERVICES.get(p.source, p.source) in services]
    page, token = _page(found, limit=limit, after_token=after_token, latest_first=latest_first)
    results = [
        HistoryItem(
            type="transfer" if p.source == "transfer" else "credit",
            source=p.source,
            description=p.description or f"credit ({p.source})",
            # Vast sends a credit in as negative, and a transfer as the org sees it (in positive)
            amount=(1 if p.source == "transfer" else -1) * _dollars(p.amount_cents),
            start=_unix(p.created_at),
            end=_unix(p.created_at),
            metadata={"invoice_id": p.id, "service": SERVICES.get(p.source, p.source)},
        )
        for p in page
    ]
    return HistoryPage(results=results, count=len(results), total=len(found), next_token=token)


@router.get("/api/v0/charges/", response_model=HistoryPage, responses=vast_errors(403))
async def charges(
    principal: Reader,
    session: Session,
    clock: ClockDep,
    select_filters: Filters = None,
    latest_first: bool = False,
    limit: Limit = 20,
    after_token: Token = None,
    format: Annotated[str | None, Query(max_length=16, description="table or tree")] = None,
) -> HistoryPage:
    """Charges by UTC day and resource over a window (`vastai show invoices-v1 --charges`)."""
    since, until, types = _filters(select_filters, "day", clock.now())
    found = await statements.charges(
        session, clock=clock, org_id=principal.org_id, since=since, until=until
    )
    if types is not None:
        found = [c for c in found if CHARGE_TYPES.get(c.resource_kind) in types]
    page, token = _page(found, limit=limit, after_token=after_token, latest_first=latest_first)
    results = [_charge_item(c) for c in page]
    return HistoryPage(results=results, count=len(results), total=len(found), next_token=token)


def _charge_item(c: statements.Charge) -> HistoryItem:
    kind = CHARGE_TYPES.get(c.resource_kind, "instance")
    metadata: dict[str, Any] = {"day": c.day, "resource_kind": c.resource_kind}
    source: str | None = None
    if c.instance_number is not None:
        source = f"{kind}-{c.instance_number}"
    elif c.resource_kind == "model":
        metadata["model"] = c.model
    else:
        source = f"{SOURCE_NAMES.get(c.resource_kind, kind)}-{c.resource_id}"
        if c.resource_kind.startswith("worker"):
            metadata["endpoint_id"] = c.resource_id
    description, _, _ = _what(c)
    return HistoryItem(
        type=kind,
        source=source,
        description=description,
        amount=_dollars(c.cost_cents),
        start=_unix(c.start),
        end=_unix(c.end),
        metadata=metadata,
    )
