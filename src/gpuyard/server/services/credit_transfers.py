"""Credit moved from one org's balance to another's (``vastai transfer credit``).

A transfer is two ledger entries of kind ``transfer`` written in one transaction: the sender's,
negative, taken with ``balances.debit_if_covered`` (one conditional statement, so a balance never
goes below zero, however many transfers and charges race), and the recipient's, positive. Their
keys are ``transfer:<sender>:<token>:out`` and ``…:in``, where the token is the request's
``Idempotency-Key`` when it has one (a retry answers the first transfer and moves nothing more)
and a fresh random one otherwise. Refusals (a bad amount, an unknown recipient, the sender
itself, a balance that does not cover it) are raised before anything is written.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gpuyard.core.clock import Clock
from gpuyard.core.errors import Conflict, InvalidRequest, NotFound
from gpuyard.core.money import BalancePolicy
from gpuyard.core.tenancy import Org
from gpuyard.server import orm
from gpuyard.server.services import balances, events, idempotency, ledger, orgs
from gpuyard.server.services.refs import by_ref

KIND = "transfer"
MAX_CENTS = ledger.MAX_CREDIT_CENTS
MAX_RECIPIENT = 200


@dataclass(frozen=True, slots=True)
class Transfer:
    id: str  # the sender's entry
    sender_org_id: str
    recipient: Org
    amount_cents: int
    balance_cents: int  # the sender's, once moved
    created_at: datetime
    replayed: bool = False


async def find_recipient(session: AsyncSession, recipient: str) -> Org:
    """The org ``recipient`` names: its integer id (what ``vastai show user`` shows as ``id``),
    its ``org_…`` id or its slug (``username``)."""
    ref = recipient.strip()
    if not ref or len(ref) > MAX_RECIPIENT:
        raise InvalidRequest(
            f"recipient must be an organization's id or slug (1 to {MAX_RECIPIENT} characters)",
            param="recipient",
        )
    if "@" in ref:
        raise InvalidRequest(
            f"recipient {ref!r} looks like an email address: gpuyard credits organizations, "
            "not people. Name the organization by its id (`vastai show user` shows it) or slug",
            param="recipient",
        )
    condition = by_ref(orm.Org, ref, "org")
    if condition is None:
        condition = orm.Org.slug == ref.lower()
    row = await session.scalar(select(orm.Org).where(condition))
    if row is None:
        raise NotFound(f"no organization {ref!r} to transfer to", code="recipient_not_found")
    return orgs.to_domain(row)


def _check_amount(amount_cents: int) -> None:
    if type(amount_cents) is not int or not 0 < amount_cents <= MAX_CENTS:
        raise InvalidRequest(
            f"amount must be from $0.01 to ${MAX_CENTS // 100:,}, in whole cents",
            param="amount",
        )


async def transfer(
    session: AsyncSession,
    *,
    clock: Clock,
    policy: BalancePolicy,
    sender_org_id: str,
    recipient: str,
    amount_cents: int,
    idempotency_key: str | None = None,
) -> Transfer:
    """Move ``amount_cents`` from the sender's balance to the recipient's, or nothing."""
    _check_amount(amount_cents)
    to = await find_recipient(session, recipient)
    if to.id == sender_org_id:
        raise InvalidRequest("an organization cannot transfer credit to itself", param="recipient")
    token = idempotency.check_key(idempotency_key) if idempotency_key else secrets.token_hex(16)
    key = f"{KIND}:{sender_org_id}:{token}"
    earlier = await _earlier(session, key)
    if earlier is not None:
        out, into = earlier
        if (-out.amount_cents, into.org_id) != (amount_cents, to.id):
            raise Conflict(
                "this Idempotency-Key was used for a transfer of another amount or recipient",
                code="idempotency_key_reused",
            )
        balance = await balances.balance_of(session, org_id=sender_org_id)
        return Transfer(out.id, sender_org_id, to, amount_cents, balance, out.created_at, True)
    now = clock.now()
    sender = await orgs.get_org(session, org_id=sender_org_id)
    # Both balances, in org order, before either moves: transfers each way at once (and metering,
    # which posts in org order too) never wait on each other in a cycle.
    await balances.lock_accounts(session, [sender_org_id, to.id], now)
    out_entry = ledger.new_entry_values(
        org_id=sender_org_id,
        key=f"{key}:out",
        kind=KIND,
        amount_cents=-amount_cents,
        now=now,
        description=f"credit transferred to {to.slug} ({to.number})",
    )
    if not await balances.debit_if_covered(session, clock=clock, entry=out_entry, policy=policy):
        has = await balances.balance_of(session, org_id=sender_org_id)
        raise Conflict(
            f"the balance (${has / 100:,.2f}) does not cover a transfer of "
            f"${amount_cents / 100:,.2f}",
            code="insufficient_credit",
            param="amount",
        )
    in_entry = ledger.new_entry_values(
        org_id=to.id,
        key=f"{key}:in",
        kind=KIND,
        amount_cents=amount_cents,
        now=now,
        description=f"credit transferred from {sender.slug} ({sender.number})",
    )
    await balances.post(session, clock=clock, entries=[in_entry], policy=policy)
    data = {"amount_cents": amount_cents, "currency": ledger.CURRENCY}
    await events.record(
        session, clock=clock, org_id=sender_org_id, type="billing.transfer_sent",
        subject_id=str(out_entry["id"]), data={**data, "recipient_org_id": to.id},
    )  # fmt: skip
    await events.record(
        session, clock=clock, org_id=to.id, type="billing.transfer_received",
        subject_id=str(in_entry["id"]), data={**data, "sender_org_id": sender_org_id},
    )  # fmt: skip
    balance = await balances.balance_of(session, org_id=sender_org_id)
    return Transfer(str(out_entry["id"]), sender_org_id, to, amount_cents, balance, now)


async def _earlier(
    session: AsyncSession, key: str
) -> tuple[orm.LedgerEntry, orm.LedgerEntry] | None:
    rows = (
        await session.scalars(
            select(orm.LedgerEntry).where(orm.LedgerEntry.key.in_([f"{key}:out", f"{key}:in"]))
        )
    ).all()
    found = {row.key.rsplit(":", 1)[1]: row for row in rows}
    if "out" not in found or "in" not in found:
        return None
    return found["out"], found["in"]
