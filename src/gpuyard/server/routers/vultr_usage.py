"""Vultr's ``GET /v1/usage``: the caller's org's inference usage this month and last month, with
an inference key as Vultr's API key."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Security

from gpuyard.server.deps import ClockDep, Session, bearer_key
from gpuyard.server.routers.inference import Caller, openai_errors
from gpuyard.server.schemas.billing import MonthUsageOut, VultrUsageOut
from gpuyard.server.services import ledger

router = APIRouter(tags=["inference"], dependencies=[Security(bearer_key)])


@router.get("/v1/usage", response_model=VultrUsageOut, responses=openai_errors(401, 403))
async def get_usage(principal: Caller, session: Session, clock: ClockDep) -> VultrUsageOut:
    """Tokens and their cost by model, for the current and the previous calendar month (UTC)."""
    now = clock.now()
    current = ledger.month_start(now)
    previous = ledger.previous_month_start(now)
    this = await ledger.token_usage(
        session, org_id=principal.org_id, since=current, until=now + timedelta(seconds=1)
    )
    last = await ledger.token_usage(session, org_id=principal.org_id, since=previous, until=current)
    return VultrUsageOut(
        current_month=MonthUsageOut.of(current, this),
        previous_month=MonthUsageOut.of(previous, last),
    )
