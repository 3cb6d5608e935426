"""Vast credit and earnings: ``vastai transfer credit`` (``PUT /api/v0/commands/transfer_credit/``),
``vastai show deposit`` (``GET /api/v0/instances/balance/{id}/``) and ``vastai show earnings``
(``GET /api/v0/users/me/machine-earnings``), over services/credit_transfers.py,
services/statements.py and services/earnings.py. Dollars, as the dialect speaks."""

from __future__ import annotations

import math
from datetime import UTC, date, timedelta
from typing import Annotated

from fastapi import APIRouter, Header, Query

from gpuyard.core import money
from gpuyard.core.errors import InvalidRequest
from gpuyard.server.compat.vast_scopes import Reader, Writer
from gpuyard.server.deps import ClockDep, KeysChanged, Session, SettingsDep
from gpuyard.server.schemas.vast import vast_errors
from gpuyard.server.schemas.vast_billing import (
    CreditTransferred,
    DayEarn,
    Deposit,
    Earn,
    EarningsCurrent,
    EarningsSummary,
    MachineEarn,
    MachineEarnings,
    TransferCredit,
)
from gpuyard.server.services import credit_transfers, earnings, instances, ledger, orgs, statements

router = APIRouter(tags=["vast"])
EPOCH = date(1970, 1, 1)


@router.put(
    "/api/v0/commands/transfer_credit/",
    response_model=CreditTransferred,
    responses=vast_errors(400, 403, 404, 409),
)
async def transfer_credit(
    body: TransferCredit,
    principal: Writer,
    session: Session,
    clock: ClockDep,
    settings: SettingsDep,
    keys_changed: KeysChanged,
    idempotency_key: Annotated[
        str | None, Header(description="Optional: the same key transfers once")
    ] = None,
) -> CreditTransferred:
    """Move credit from the caller's org to another (`vastai transfer credit RECIPIENT AMOUNT`):
    both ledger entries in one transaction, never leaving the caller's balance below zero."""
    if body.sender not in ("me", principal.org_id):
        raise InvalidRequest(
            "sender must be 'me': a key moves its own org's credit", param="sender"
        )
    try:
        cents = money.cents_of_dollars(body.amount)
    except ValueError as exc:
        raise InvalidRequest(
            f"amount must be dollars in whole cents, e.g. 25.50, not {body.amount!r}",
            param="amount",
        ) from exc
    done = await credit_transfers.transfer(
        session,
        clock=clock,
        policy=settings.balance_policy(),
        sender_org_id=principal.org_id,
        recipient=body.recipient,
        amount_cents=cents,
        idempotency_key=idempotency_key,
    )
    keys_changed()  # a recipient refused inference for want of funds is let through at once
    dollars = money.dollars(done.amount_cents)
    return CreditTransferred(
        msg=f"Sent {dollars:.2f} to {done.recipient.slug}",
        transfer_id=done.id,
        recipient_id=done.recipient.number,
        recipient=done.recipient.slug,
        amount=dollars,
        balance=money.dollars(done.balance_cents),
    )


@router.get(
    "/api/v0/instances/balance/{instance_id}/",
    response_model=Deposit,
    responses=vast_errors(403, 404),
)
async def show_deposit(
    instance_id: str,
    principal: Reader,
    session: Session,
    owner: Annotated[str | None, Query(max_length=64, description="Always the caller")] = None,
) -> Deposit:
    """What one of the caller's instances has been charged (`vastai show deposit ID`); nothing
    is ever held in reserve for it."""
    found = await instances.get_instance(session, org_id=principal.org_id, instance_ref=instance_id)
    spent = await statements.charged(session, org_id=principal.org_id, resource_id=found.id)
    balance = await ledger.balance_cents(session, org_id=principal.org_id)
    last = spent.last_charged_at
    return Deposit(
        instance_id=found.number,
        dph_total=money.dollars_per_hour(found.cents_per_hour),
        charged=money.dollars(spent.gpu_cents + spent.disk_cents),
        gpu_charged=money.dollars(spent.gpu_cents),
        disk_charged=money.dollars(spent.disk_cents),
        gpu_seconds=spent.gpu_seconds,
        last_charged=last.timestamp() if last is not None else None,
        credit=money.dollars(balance),
    )


def _day(value: float | None, default: date, param: str) -> date:
    """A Vast day (days since 1970, fractional) as a UTC date."""
    if value is None:
        return default
    if not math.isfinite(value) or abs(value) > 2_900_000:
        raise InvalidRequest(f"{param} is not a day (days since 1970-01-01)", param=param)
    try:
        return EPOCH + timedelta(days=math.floor(value))
    except OverflowError as exc:
        raise InvalidRequest(f"{param} is not a day (days since 1970-01-01)", param=param) from exc


def _machine(value: str | None) -> int | None:
    """``machid`` as the CLI sends it: JSON, ``null`` when no machine was asked for."""
    if value is None or value.strip() in ("", "null"):
        return None
    text = value.strip()
    if not (text.isascii() and text.isdigit() and len(text) <= 18):
        raise InvalidRequest(
            f"machid must be a machine's integer id, not {value!r}", param="machid"
        )
    return int(text)


def _earn(e: earnings.Earned) -> dict[str, float]:
    return {"gpu_earn": money.dollars(e.gpu_cents), "sto_earn": money.dollars(e.disk_cents)}


@router.get(
    "/api/v0/users/me/machine-earnings",
    response_model=MachineEarnings,
    responses=vast_errors(400, 403, 404),
)
@router.get(
    "/api/v0/users/me/machine-earnings/", response_model=MachineEarnings, include_in_schema=False
)
async def machine_earnings(
    principal: Reader,
    session: Session,
    clock: ClockDep,
    sday: Annotated[float | None, Query(description="First day, days since 1970 (UTC)")] = None,
    eday: Annotated[float | None, Query(description="Last day, days since 1970 (UTC)")] = None,
    machid: Annotated[str | None, Query(max_length=32, description="One machine's id")] = None,
    owner: Annotated[str | None, Query(max_length=64, description="Always the caller")] = None,
) -> MachineEarnings:
    """What the org's machines earned by machine and by UTC day, `sday` to `eday` included
    (`vastai show earnings`; default yesterday). Only the operator org has machines."""
    yesterday = clock.now().astimezone(UTC).date() - timedelta(days=1)
    first, last = _day(sday, yesterday, "sday"), _day(eday, yesterday, "eday")
    found = await earnings.earnings(
        session, org_id=principal.org_id, first_day=first, last_day=last, machine=_machine(machid)
    )
    org = await orgs.get_org(session, org_id=principal.org_id)
    balance = money.dollars(await ledger.balance_cents(session, org_id=principal.org_id))
    total = found.total
    return MachineEarnings(
        username=org.slug,
        fullname=org.name,
        sday=(first - EPOCH).days,
        eday=(last - EPOCH).days,
        summary=EarningsSummary(
            total_gpu=money.dollars(total.gpu_cents), total_stor=money.dollars(total.disk_cents)
        ),
        current=EarningsCurrent(balance=balance, total=balance, credit=balance),
        per_machine=[MachineEarn(machine_id=m, **_earn(e)) for m, e in found.per_machine.items()],
        per_day=[DayEarn(day=(d - EPOCH).days, **_earn(e)) for d, e in found.per_day.items()],
        unattributed=Earn(**_earn(found.unattributed)),
    )
