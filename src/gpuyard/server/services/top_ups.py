"""Top-ups: an org pays money in through a payment provider, and is credited once it has paid.

``create`` records a pending top-up and asks the provider to start a payment for it (the
provider's idempotency key is the top-up's id, so a retried start makes one payment). The
provider's webhook, verified by the provider's adapter, reports what became of the payment;
``apply_event`` credits a succeeded payment with one ledger entry keyed ``topup:<id>``, under a
lock on the top-up's row, so however often the provider redelivers the event, and on however
many replicas at once, the org is credited exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gpuyard.core.clock import Clock
from gpuyard.core.errors import InvalidRequest
from gpuyard.core.ids import new_id
from gpuyard.core.money import BalancePolicy
from gpuyard.core.pagination import Page
from gpuyard.server import orm
from gpuyard.server.services import balances, events, ledger, orgs
from gpuyard.server.services.pagination import paginate

MIN_TOP_UP_CENTS = 100  # what card payments allow at the least, about
MAX_TOP_UP_CENTS = 1_000_000_00


@dataclass(frozen=True, slots=True)
class Started:
    """A payment the provider has started: its id there, and what the payer's client needs."""

    ref: str
    client_secret: str | None


@dataclass(frozen=True, slots=True)
class PaymentEvent:
    """What a verified webhook says: the provider's payment ``ref`` and whether it ``succeeded``
    (False: it failed or was canceled; None: an event that changes nothing here)."""

    id: str
    type: str
    ref: str | None
    amount_cents: int | None
    succeeded: bool | None


class PaymentProvider(Protocol):
    name: str

    async def start(
        self, *, top_up_id: str, org_id: str, amount_cents: int, currency: str
    ) -> Started: ...

    def verify(self, payload: bytes, signature: str | None) -> PaymentEvent:
        """The event of a webhook; ``InvalidRequest`` when its signature does not hold."""
        ...


@dataclass(frozen=True, slots=True)
class TopUp:
    id: str
    org_id: str
    amount_cents: int
    currency: str
    provider: str
    provider_ref: str | None
    client_secret: str | None
    status: str
    credited_at: datetime | None
    created_at: datetime


def _domain(row: orm.TopUp) -> TopUp:
    return TopUp(
        id=row.id,
        org_id=row.org_id,
        amount_cents=row.amount_cents,
        currency=row.currency,
        provider=row.provider,
        provider_ref=row.provider_ref,
        client_secret=row.client_secret,
        status=row.status,
        credited_at=row.credited_at,
        created_at=row.created_at,
    )


async def create(
    session: AsyncSession,
    *,
    clock: Clock,
    provider: PaymentProvider,
    org_id: str,
    amount_cents: int,
    currency: str,
) -> TopUp:
    if type(amount_cents) is not int or not MIN_TOP_UP_CENTS <= amount_cents <= MAX_TOP_UP_CENTS:
        raise InvalidRequest(
            f"amount_cents must be whole cents from {MIN_TOP_UP_CENTS} to {MAX_TOP_UP_CENTS}",
            param="amount_cents",
        )
    if currency != ledger.CURRENCY:
        raise InvalidRequest(f"currency must be {ledger.CURRENCY}", param="currency")
    await orgs.get_org(session, org_id=org_id)
    now = clock.now()
    row = orm.TopUp(
        id=new_id("top"),
        org_id=org_id,
        amount_cents=amount_cents,
        currency=currency,
        provider=provider.name,
        status="pending",
        created_at=now,
        updated_at=now,
    )
    started = await provider.start(
        top_up_id=row.id, org_id=org_id, amount_cents=amount_cents, currency=currency
    )
    row.provider_ref, row.client_secret = started.ref, started.client_secret
    session.add(row)
    await session.flush()
    return _domain(row)


async def list_top_ups(
    session: AsyncSession, *, org_id: str, limit: int, cursor: str | None
) -> Page[TopUp]:
    await orgs.get_org(session, org_id=org_id)
    stmt = select(orm.TopUp).where(orm.TopUp.org_id == org_id)
    return await paginate(
        session, stmt, model=orm.TopUp, limit=limit, cursor=cursor, convert=_domain
    )


async def apply_event(
    session: AsyncSession,
    *,
    clock: Clock,
    provider: str,
    event: PaymentEvent,
    policy: BalancePolicy,
) -> TopUp | None:
    """Act on a verified payment event: credit a succeeded top-up (once), mark a failed one.
    None: the event is not about a top-up of ours (it is acknowledged all the same)."""
    if event.ref is None or event.succeeded is None:
        return None
    row = await session.scalar(
        select(orm.TopUp)
        .where(orm.TopUp.provider == provider, orm.TopUp.provider_ref == event.ref)
        .with_for_update()
    )
    if row is None:
        return None
    now = clock.now()
    if event.succeeded and row.credited_at is None:
        if event.amount_cents is not None and event.amount_cents != row.amount_cents:
            raise InvalidRequest("the payment's amount is not the top-up's", param="amount")
        entry = ledger.new_entry_values(
            org_id=row.org_id,
            key=f"topup:{row.id}",
            kind="credit",
            amount_cents=row.amount_cents,
            now=now,
            description=f"top-up {row.id} through {provider}",
        )
        await balances.post(session, clock=clock, entries=[entry], policy=policy)
        row.status, row.credited_at, row.updated_at = "succeeded", now, now
        await events.record(
            session,
            clock=clock,
            org_id=row.org_id,
            type="billing.topped_up",
            subject_id=row.id,
            data={"amount_cents": row.amount_cents, "currency": row.currency},
        )
    elif event.succeeded is False and row.status == "pending":
        row.status, row.updated_at = "failed", now
    await session.flush()
    return _domain(row)
