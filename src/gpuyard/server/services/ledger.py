"""The ledger: every movement of an org's money, integer cents, append-only.

Credits and top-ups are positive entries, charges negative; the balance is their sum. Every entry
has a unique ``key`` that says what it pays for (``usage:<workload>:<period>``,
``credit:<org>:<Idempotency-Key>``), so writing the same movement twice is impossible, whichever
replica or retry tries. Usage entries are written by the metering controller
(controllers/metering.py); credits by the operator here; transfers between orgs by
services/credit_transfers.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from gpuyard.core.clock import Clock
from gpuyard.core.errors import Conflict, InvalidRequest
from gpuyard.core.ids import new_id
from gpuyard.core.money import SECONDS_PER_HOUR, BalancePolicy
from gpuyard.core.pagination import Page
from gpuyard.server import orm
from gpuyard.server.services import balances, events, orgs
from gpuyard.server.services.pagination import paginate

CURRENCY = "usd"
MAX_CREDIT_CENTS = 100_000_000_00  # one hundred million dollars in one credit
KINDS = ("credit", "usage", "tokens", "transfer")
CHARGES = ("usage", "tokens")


@dataclass(frozen=True, slots=True)
class Entry:
    id: str
    org_id: str
    kind: str
    amount_cents: int
    description: str | None
    resource_kind: str | None
    resource_id: str | None
    gpu_seconds: int | None
    cents_per_hour: int | None
    period_start: datetime | None
    period_end: datetime | None
    created_at: datetime
    disk_gb: int | None = None
    cents_per_gb_month: int | None = None
    model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cents_per_million_input: int | None = None
    cents_per_million_output: int | None = None
    characters: int | None = None
    cents_per_million_characters: int | None = None


@dataclass(frozen=True, slots=True)
class Summary:
    org_id: str
    balance_cents: int
    month_to_date_spend_cents: int
    burn_cents_per_hour: int
    currency: str = CURRENCY


def to_domain(row: orm.LedgerEntry) -> Entry:
    return Entry(
        id=row.id,
        org_id=row.org_id,
        kind=row.kind,
        amount_cents=row.amount_cents,
        description=row.description,
        resource_kind=row.resource_kind,
        resource_id=row.resource_id,
        gpu_seconds=row.gpu_seconds,
        cents_per_hour=row.cents_per_hour,
        period_start=row.period_start,
        period_end=row.period_end,
        created_at=row.created_at,
        disk_gb=row.disk_gb,
        cents_per_gb_month=row.cents_per_gb_month,
        model=row.model,
        input_tokens=row.input_tokens,
        output_tokens=row.output_tokens,
        cents_per_million_input=row.cents_per_million_input,
        cents_per_million_output=row.cents_per_million_output,
        characters=row.characters,
        cents_per_million_characters=row.cents_per_million_characters,
    )


def day_of(when: datetime) -> str:
    return when.astimezone(UTC).date().isoformat()


def new_entry_values(
    *, org_id: str, key: str, kind: str, amount_cents: int, now: datetime, **usage: object
) -> dict[str, object]:
    """The columns of a ledger row; the one way entries are made, so none is made without a key
    and integer cents."""
    if type(amount_cents) is not int:  # a float (or a bool) never reaches the ledger
        raise TypeError(f"ledger amounts are integer cents, not {type(amount_cents).__name__}")
    return {
        "id": new_id("led"),
        "org_id": org_id,
        "key": key,
        "kind": kind,
        "amount_cents": amount_cents,
        "description": None,
        "resource_kind": None,
        "resource_id": None,
        "gpu_seconds": None,
        "cents_per_hour": None,
        "disk_gb": None,
        "cents_per_gb_month": None,
        "model": None,
        "input_tokens": None,
        "output_tokens": None,
        "cents_per_million_input": None,
        "cents_per_million_output": None,
        "characters": None,
        "cents_per_million_characters": None,
        "period_start": None,
        "period_end": None,
        "machine_id": None,
        "day": day_of(now),
        "created_at": now,
        **usage,
    }


def new_entry(**values: Any) -> orm.LedgerEntry:
    return orm.LedgerEntry(**new_entry_values(**values))


async def credit(
    session: AsyncSession,
    *,
    clock: Clock,
    org_id: str,
    amount_cents: int,
    currency: str,
    idempotency_key: str,
    description: str | None,
    policy: BalancePolicy,
) -> Entry:
    """Add ``amount_cents`` to the org's balance, once per ``idempotency_key``."""
    if currency.lower() != CURRENCY:
        raise InvalidRequest(
            f"unknown currency {currency!r}: balances are kept in {CURRENCY}",
            code="invalid_currency",
            param="currency",
        )
    if not 0 < amount_cents <= MAX_CREDIT_CENTS:
        raise InvalidRequest(
            f"amount_cents must be a whole number of cents from 1 to {MAX_CREDIT_CENTS}",
            param="amount_cents",
        )
    await orgs.get_org(session, org_id=org_id)  # 404 for an org that does not exist
    key = f"credit:{org_id}:{idempotency_key}"
    existing = await session.scalar(select(orm.LedgerEntry).where(orm.LedgerEntry.key == key))
    if existing is not None:  # the same credit again, after its stored response expired
        if existing.amount_cents != amount_cents:
            raise Conflict(
                "this Idempotency-Key was used for a credit of another amount",
                code="idempotency_key_reused",
            )
        return to_domain(existing)
    now = clock.now()
    values = new_entry_values(
        org_id=org_id,
        key=key,
        kind="credit",
        amount_cents=amount_cents,
        now=now,
        description=description,
    )
    await balances.post(session, clock=clock, entries=[values], policy=policy)
    row = await session.scalar(select(orm.LedgerEntry).where(orm.LedgerEntry.key == key))
    assert row is not None
    await events.record(
        session,
        clock=clock,
        org_id=org_id,
        type="billing.credited",
        subject_id=row.id,
        data={"amount_cents": amount_cents, "currency": CURRENCY},
    )
    return to_domain(row)


async def balance_cents(session: AsyncSession, *, org_id: str) -> int:
    total = await session.scalar(
        select(func.coalesce(func.sum(orm.LedgerEntry.amount_cents), 0)).where(
            orm.LedgerEntry.org_id == org_id
        )
    )
    return int(total or 0)


def month_start(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


async def summary(session: AsyncSession, *, clock: Clock, org_id: str) -> Summary:
    """Balance, what usage cost since the month began, and the burn rate: the prices in force of
    what is billed right now, per hour."""
    await orgs.get_org(session, org_id=org_id)
    now = clock.now()
    spent = await session.scalar(
        select(func.coalesce(func.sum(orm.LedgerEntry.amount_cents), 0)).where(
            orm.LedgerEntry.org_id == org_id,
            orm.LedgerEntry.kind.in_(CHARGES),
            orm.LedgerEntry.created_at >= month_start(now),
        )
    )
    burn = await session.scalar(
        select(
            func.coalesce(
                func.sum(orm.Meter.cents_per_hour * SECONDS_PER_HOUR / orm.Meter.rate_seconds), 0
            )
        ).where(
            orm.Meter.org_id == org_id, orm.Meter.running.is_(True), orm.Meter.closed_at.is_(None)
        )
    )
    return Summary(
        org_id=org_id,
        balance_cents=await balance_cents(session, org_id=org_id),
        month_to_date_spend_cents=-int(spent or 0),
        burn_cents_per_hour=int(burn or 0),
    )


async def list_entries(
    session: AsyncSession,
    *,
    org_id: str,
    kinds: list[str] | None = None,
    resource_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int,
    cursor: str | None,
) -> Page[Entry]:
    """The org's entries oldest first, filtered by kind, resource and time."""
    if since and until and since > until:
        raise InvalidRequest("since must not be after until", param="since")
    for kind in kinds or ():
        if kind not in KINDS:
            raise InvalidRequest(f"unknown kind {kind!r}: one of {', '.join(KINDS)}", param="kind")
    stmt = select(orm.LedgerEntry).where(orm.LedgerEntry.org_id == org_id)
    if kinds:
        stmt = stmt.where(orm.LedgerEntry.kind.in_(kinds))
    if resource_id:
        stmt = stmt.where(orm.LedgerEntry.resource_id == resource_id)
    if since:
        stmt = stmt.where(orm.LedgerEntry.created_at >= since)
    if until:
        stmt = stmt.where(orm.LedgerEntry.created_at < until)
    return await paginate(
        session, stmt, model=orm.LedgerEntry, limit=limit, cursor=cursor, convert=to_domain
    )


@dataclass(frozen=True, slots=True)
class UsageLine:
    day: str
    resource_kind: str
    resource_id: str
    gpu_seconds: int
    cost_cents: int
    model: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    characters: int = 0  # text to speech


async def usage(
    session: AsyncSession,
    *,
    clock: Clock,
    org_id: str,
    since: datetime | None,
    until: datetime | None,
) -> tuple[datetime, datetime, list[UsageLine]]:
    """Charged usage by day and resource over [since, until) (default: this month so far)."""
    now = clock.now()
    start = since or month_start(now)
    end = until or now + timedelta(seconds=1)
    if start > end:
        raise InvalidRequest("since must not be after until", param="since")
    entry = orm.LedgerEntry
    rows = await session.execute(
        select(
            entry.day,
            entry.resource_kind,
            entry.resource_id,
            entry.model,
            func.coalesce(func.sum(entry.gpu_seconds), 0),
            func.coalesce(func.sum(entry.amount_cents), 0),
            func.coalesce(func.sum(entry.input_tokens), 0),
            func.coalesce(func.sum(entry.output_tokens), 0),
            func.coalesce(func.sum(entry.characters), 0),
        )
        .where(
            entry.org_id == org_id,
            entry.kind.in_(CHARGES),
            entry.created_at >= start,
            entry.created_at < end,
        )
        .group_by(entry.day, entry.resource_kind, entry.resource_id, entry.model)
        .order_by(entry.day, entry.resource_kind, entry.resource_id, entry.model)
    )
    lines = [
        UsageLine(
            day=day,
            resource_kind=kind or "",
            resource_id=rid or "",
            gpu_seconds=int(seconds or 0),
            cost_cents=-int(cost or 0),
            model=model,
            input_tokens=int(tokens_in or 0),
            output_tokens=int(tokens_out or 0),
            characters=int(chars or 0),
        )
        for day, kind, rid, model, seconds, cost, tokens_in, tokens_out, chars in rows.all()
    ]
    return start, end, lines


@dataclass(frozen=True, slots=True)
class ModelUsage:
    model: str
    input_tokens: int
    output_tokens: int
    cost_cents: int


def previous_month_start(now: datetime) -> datetime:
    start = month_start(now)
    return month_start(start - timedelta(days=1))


async def token_usage(
    session: AsyncSession, *, org_id: str, since: datetime, until: datetime
) -> list[ModelUsage]:
    """Tokens charged and what they cost, by model, over [since, until)."""
    entry = orm.LedgerEntry
    rows = await session.execute(
        select(
            entry.model,
            func.coalesce(func.sum(entry.input_tokens), 0),
            func.coalesce(func.sum(entry.output_tokens), 0),
            func.coalesce(func.sum(entry.amount_cents), 0),
        )
        .where(
            entry.org_id == org_id,
            entry.kind == "tokens",
            entry.created_at >= since,
            entry.created_at < until,
        )
        .group_by(entry.model)
        .order_by(entry.model)
    )
    return [
        ModelUsage(model or "", int(tokens_in or 0), int(tokens_out or 0), -int(cost or 0))
        for model, tokens_in, tokens_out, cost in rows.all()
    ]
