"""``/v1/orgs/{org_id}/billing`` and ``/usage``: the org's balance, ledger and usage; and the
operator's credits (``/v1/admin/orgs/{org_id}/credits``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, status

from gpuyard.core.errors import InvalidRequest
from gpuyard.server.deps import (
    ClockDep,
    KeysChanged,
    Operator,
    OrgMember,
    Session,
    SettingsDep,
)
from gpuyard.server.routers.params import DEFAULT, Cursor, Limit
from gpuyard.server.schemas.billing import (
    BillingOut,
    CreditCreate,
    LedgerEntryOut,
    UsageLineOut,
    UsageOut,
)
from gpuyard.server.schemas.common import PageOut, UtcDatetime, errors, page_of
from gpuyard.server.services import ledger

router = APIRouter(tags=["billing"])


@router.post(
    "/v1/admin/orgs/{org_id}/credits",
    status_code=status.HTTP_201_CREATED,
    response_model=LedgerEntryOut,
    responses=errors(403, 404, 409),
)
async def credit_org(
    org_id: str,
    body: CreditCreate,
    principal: Operator,
    session: Session,
    clock: ClockDep,
    settings: SettingsDep,
    keys_changed: KeysChanged,
    idempotency_key: Annotated[
        str | None,
        Header(description="Required: the same key credits once, however often it is sent"),
    ] = None,
) -> LedgerEntryOut:
    """Add money to an org's balance (operator only). A retry with the same `Idempotency-Key`
    answers the first credit again and adds nothing."""
    if not idempotency_key:
        raise InvalidRequest(
            "a credit needs an Idempotency-Key header, so that a retry cannot credit twice",
            code="idempotency_key_required",
            param="Idempotency-Key",
        )
    entry = await ledger.credit(
        session,
        clock=clock,
        org_id=org_id,
        amount_cents=body.amount_cents,
        currency=body.currency,
        idempotency_key=idempotency_key,
        description=body.description,
        policy=settings.balance_policy(),
    )
    keys_changed()  # inference refused for want of funds is let through again at once
    return LedgerEntryOut.of(entry)


@router.get("/v1/orgs/{org_id}/billing", response_model=BillingOut, responses=errors(403, 404))
async def get_billing(
    org_id: str, principal: OrgMember, session: Session, clock: ClockDep
) -> BillingOut:
    """Balance, month-to-date spend and the burn rate per hour, in cents."""
    return BillingOut.of(await ledger.summary(session, clock=clock, org_id=org_id))


@router.get(
    "/v1/orgs/{org_id}/billing/ledger",
    response_model=PageOut[LedgerEntryOut],
    responses=errors(403, 404),
)
async def list_ledger(
    org_id: str,
    principal: OrgMember,
    session: Session,
    kind: Annotated[
        list[str] | None, Query(max_length=5, description="Only these kinds (repeatable)")
    ] = None,
    resource_id: Annotated[
        str | None, Query(max_length=32, description="Only this instance or cluster")
    ] = None,
    since: Annotated[UtcDatetime | None, Query(description="Created at or after")] = None,
    until: Annotated[UtcDatetime | None, Query(description="Created before")] = None,
    limit: Limit = DEFAULT,
    cursor: Cursor = None,
) -> PageOut[LedgerEntryOut]:
    """Ledger entries oldest first; filter by kind, resource and time."""
    page = await ledger.list_entries(
        session,
        org_id=org_id,
        kinds=kind,
        resource_id=resource_id,
        since=since,
        until=until,
        limit=limit,
        cursor=cursor,
    )
    return page_of(page, LedgerEntryOut.of)


@router.get("/v1/orgs/{org_id}/usage", response_model=UsageOut, responses=errors(403, 404))
async def get_usage(
    org_id: str,
    principal: OrgMember,
    session: Session,
    clock: ClockDep,
    since: Annotated[UtcDatetime | None, Query(description="Default: the month's start")] = None,
    until: Annotated[UtcDatetime | None, Query(description="Default: now")] = None,
) -> UsageOut:
    """Charged usage by UTC day and resource: GPU-seconds and cost in cents."""
    start, end, lines = await ledger.usage(
        session, clock=clock, org_id=org_id, since=since, until=until
    )
    return UsageOut(
        org_id=org_id,
        since=start,
        until=end,
        gpu_seconds=sum(u.gpu_seconds for u in lines),
        cost_cents=sum(u.cost_cents for u in lines),
        data=[UsageLineOut.of(u) for u in lines],
    )
