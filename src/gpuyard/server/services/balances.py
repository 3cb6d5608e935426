"""Posting to the ledger and keeping each org's balance with it.

``post`` inserts ledger entries and adds their amounts to the orgs' ``billing_accounts`` rows in
the same transaction (accounts in org order, so two posters never wait on each other in a
cycle), then looks at where each balance landed: under the low-balance threshold after a debit
(one ``billing.low_balance`` event until a credit brings it back to the threshold), at or below
zero (``billing.depleted``, and the billing enforcer scheduled for the end of the grace period),
back above zero (``billing.restored``). ``debit_if_covered`` takes an amount only if the balance
covers it, in one conditional statement: concurrent debits can never take more than is there.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gpuyard.core.clock import Clock
from gpuyard.core.errors import InsufficientQuota
from gpuyard.core.money import BalancePolicy
from gpuyard.server import bulk_rows, orm
from gpuyard.server.db import insert_on_conflict
from gpuyard.server.services import events, wakeups


async def _add(session: AsyncSession, org_id: str, delta: int, now: datetime) -> int:
    """Add ``delta`` to the org's account (made if missing); the new balance."""
    stmt = insert_on_conflict(session, orm.BillingAccount).values(
        org_id=org_id,
        balance_cents=delta,
        low_balance_notified=False,
        updated_at=now,
    )
    upsert = stmt.on_conflict_do_update(
        index_elements=["org_id"],
        set_={
            "balance_cents": orm.BillingAccount.balance_cents + delta,
            "updated_at": now,
        },
    ).returning(orm.BillingAccount.balance_cents)
    return int((await session.execute(upsert)).scalar_one())


async def lock_accounts(session: AsyncSession, org_ids: list[str], now: datetime) -> None:
    """Lock the orgs' accounts (made if missing) in org order, as ``post`` takes them: a
    transaction that moves money between several orgs takes them all first, so two such
    transactions (a transfer each way) never wait on each other in a cycle."""
    for org_id in sorted(set(org_ids)):
        await _add(session, org_id, 0, now)  # an upsert: the row is made and locked


_LEDGER = orm.LedgerEntry.metadata.tables[orm.LedgerEntry.__tablename__]


async def post(
    session: AsyncSession,
    *,
    clock: Clock,
    entries: list[dict[str, Any]],
    policy: BalancePolicy,
) -> None:
    """Insert ``entries`` (``ledger.new_entry_values``) and move each org's balance with them."""
    if not entries:
        return
    await bulk_rows.insert_rows(session, _LEDGER, entries)
    deltas: dict[str, int] = defaultdict(int)
    for entry in entries:
        deltas[entry["org_id"]] += entry["amount_cents"]
    now = clock.now()
    for org_id in sorted(deltas):
        balance = await _add(session, org_id, deltas[org_id], now)
        await _crossed(
            session, clock=clock, org_id=org_id, before=balance - deltas[org_id], after=balance,
            policy=policy,
        )  # fmt: skip


async def _crossed(
    session: AsyncSession,
    *,
    clock: Clock,
    org_id: str,
    before: int,
    after: int,
    policy: BalancePolicy,
) -> None:
    account = await session.scalar(
        select(orm.BillingAccount).where(orm.BillingAccount.org_id == org_id)
    )
    assert account is not None
    now = clock.now()
    low = policy.low_balance_cents
    data = {"balance_cents": after, "threshold_cents": low}
    # A debit that leaves it under the threshold warns once, also an org that was never above
    # it (credited less than the threshold); a credit back to the threshold arms it again.
    if after < low and not account.low_balance_notified and after < before:
        account.low_balance_notified = True
        await events.record(
            session, clock=clock, org_id=org_id, type="billing.low_balance", data=data
        )
    elif after >= low:
        account.low_balance_notified = False
    if after <= 0 and account.depleted_at is None:
        account.depleted_at = now
        account.next_run_at = now + timedelta(seconds=policy.grace_seconds)
        wakeups.note_table(session, orm.BillingAccount)  # the enforcer: due after the grace
        await events.record(
            session,
            clock=clock,
            org_id=org_id,
            type="billing.depleted",
            data={"balance_cents": after, "grace_seconds": int(policy.grace_seconds)},
        )
    elif after > 0 and account.depleted_at is not None:
        was_enforced = account.enforced_at is not None
        account.depleted_at = None
        account.enforced_at = None
        account.next_run_at = None
        await events.record(
            session,
            clock=clock,
            org_id=org_id,
            type="billing.restored",
            data={"balance_cents": after, "was_enforced": was_enforced},
        )


async def balance_of(session: AsyncSession, *, org_id: str) -> int:
    found = await session.scalar(
        select(orm.BillingAccount.balance_cents).where(orm.BillingAccount.org_id == org_id)
    )
    return int(found or 0)


async def check_funds(session: AsyncSession, *, org_id: str) -> None:
    """InsufficientQuota when the org's balance has been at or below zero past its grace period
    (the billing enforcer has stopped its spending)."""
    enforced = await session.scalar(
        select(orm.BillingAccount.enforced_at).where(
            orm.BillingAccount.org_id == org_id, orm.BillingAccount.balance_cents <= 0
        )
    )
    if enforced is not None:
        raise InsufficientQuota(
            "You exceeded your current quota: the organization's balance is spent. Add credit "
            "to continue.",
        )


async def debit_if_covered(
    session: AsyncSession,
    *,
    clock: Clock,
    entry: dict[str, Any],
    policy: BalancePolicy,
) -> bool:
    """Post ``entry`` (a negative amount) only if the balance covers it; False, and nothing
    written, when it does not. One conditional UPDATE decides, so concurrent debits serialise on
    the account row and never overdraw it."""
    cost = -int(entry["amount_cents"])
    taken = await session.execute(
        update(orm.BillingAccount)
        .where(
            orm.BillingAccount.org_id == entry["org_id"], orm.BillingAccount.balance_cents >= cost
        )
        .values(balance_cents=orm.BillingAccount.balance_cents - cost, updated_at=clock.now())
        .returning(orm.BillingAccount.balance_cents)
    )
    after = taken.scalar_one_or_none()
    if after is None:
        return False
    await session.execute(insert(orm.LedgerEntry), [entry])
    await _crossed(
        session, clock=clock, org_id=entry["org_id"], before=after + cost, after=int(after),
        policy=policy,
    )  # fmt: skip
    return True
