"""Inference charged by the token: per-model prices, a hold taken before a request is let through,
and the charge settled from the usage it reported.

Before a request to a priced model goes upstream, ``hold`` takes what it could cost at most (its
prompt, estimated from its size, plus its ``max_tokens`` of output, at the model's prices,
rounded up to whole cents) with ``balances.debit_if_covered``: one conditional statement, so
concurrent requests never take more than the balance holds, and a request the balance does not
cover is refused (429 ``insufficient_quota``) before it costs anything. When it ends, ``settle``
adds its exact cost (``c`` cents per million tokens is ``c`` micro-cents a token) to the org's
token meter for that model and posts the hold back less the whole cents now due
(``floor(used / 1e6) - charged``), so fractions carry from one request to the next and rounding
never drifts. Both entries are keyed by the request (``tokens:<request>:hold`` and
``tokens:<request>``): each is written once, however often it is tried. Net, a request costs what
it used.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from gpuyard.core.clock import Clock
from gpuyard.core.errors import InsufficientQuota, InvalidRequest, NotFound
from gpuyard.core.money import MICROCENTS_PER_CENT, BalancePolicy
from gpuyard.server import orm
from gpuyard.server.services import balances, ledger

KIND = "tokens"
BYTES_PER_TOKEN = 2  # a prompt is estimated high: no tokenizer yields fewer bytes a token
DEFAULT_HOLD_OUTPUT_TOKENS = 4096  # a request without ``max_tokens``
MAX_MODEL = 200
MAX_PRICE = 100_000_000  # cents per million tokens


@dataclass(frozen=True, slots=True)
class ModelPrice:
    model: str
    cents_per_million_input: int
    cents_per_million_output: int
    updated_at: datetime


def _domain(row: orm.ModelPrice) -> ModelPrice:
    return ModelPrice(
        row.model, row.cents_per_million_input, row.cents_per_million_output, row.updated_at
    )


async def list_prices(session: AsyncSession) -> list[ModelPrice]:
    rows = await session.scalars(select(orm.ModelPrice).order_by(orm.ModelPrice.model))
    return [_domain(r) for r in rows]


async def price_of(session: AsyncSession, model: str) -> ModelPrice | None:
    row = await session.scalar(select(orm.ModelPrice).where(orm.ModelPrice.model == model))
    return _domain(row) if row is not None else None


async def set_price(
    session: AsyncSession, *, clock: Clock, model: str, input_cents: int, output_cents: int
) -> ModelPrice:
    if not model or len(model) > MAX_MODEL:
        raise InvalidRequest(f"model must be 1 to {MAX_MODEL} characters", param="model")
    for name, cents in (
        ("cents_per_million_input", input_cents),
        ("cents_per_million_output", output_cents),
    ):
        if not 0 <= cents <= MAX_PRICE:
            raise InvalidRequest(f"{name} must be 0 to {MAX_PRICE}", param=name)
    row = await session.scalar(select(orm.ModelPrice).where(orm.ModelPrice.model == model))
    if row is None:
        row = orm.ModelPrice(model=model, updated_at=clock.now())
        session.add(row)
    row.cents_per_million_input, row.cents_per_million_output = input_cents, output_cents
    row.updated_at = clock.now()
    await session.flush()
    return _domain(row)


async def delete_price(session: AsyncSession, *, model: str) -> None:
    row = await session.scalar(select(orm.ModelPrice).where(orm.ModelPrice.model == model))
    if row is None:
        raise NotFound(f"no price set for model {model}", code="price_not_found")
    await session.delete(row)


def cost_microcents(price: ModelPrice, input_tokens: int, output_tokens: int) -> int:
    """Exact: ``c`` cents per million tokens is ``c`` micro-cents a token."""
    return (
        price.cents_per_million_input * input_tokens
        + price.cents_per_million_output * output_tokens
    )


def hold_cents(price: ModelPrice, body_bytes: int, max_tokens: int | None) -> int:
    """The most a request could cost, in whole cents (at least one)."""
    prompt = body_bytes // BYTES_PER_TOKEN + 1
    output = max_tokens if max_tokens is not None else DEFAULT_HOLD_OUTPUT_TOKENS
    most = cost_microcents(price, prompt, output)
    return max(1, -(-most // MICROCENTS_PER_CENT))


def _price_columns(price: ModelPrice) -> dict[str, object]:
    return {
        "model": price.model,
        "cents_per_million_input": price.cents_per_million_input,
        "cents_per_million_output": price.cents_per_million_output,
    }


async def hold(
    session: AsyncSession,
    *,
    clock: Clock,
    policy: BalancePolicy,
    org_id: str,
    request_id: str,
    model: str,
    body_bytes: int,
    max_tokens: int | None,
) -> int:
    """Take the request's hold (0: the model is not priced); InsufficientQuota, nothing taken,
    when the balance does not cover it."""
    price = await price_of(session, model)
    if price is None:
        return 0
    cents = hold_cents(price, body_bytes, max_tokens)
    entry = ledger.new_entry_values(
        org_id=org_id,
        key=f"{KIND}:{request_id}:hold",
        kind=KIND,
        amount_cents=-cents,
        now=clock.now(),
        description="held until the request ends",
        resource_kind="model",
        **_price_columns(price),
    )
    if not await balances.debit_if_covered(session, clock=clock, entry=entry, policy=policy):
        raise InsufficientQuota(
            "You exceeded your current quota: the organization's balance does not cover this "
            "request. Add credit to continue."
        )
    return cents


async def settle(
    session: AsyncSession,
    *,
    clock: Clock,
    policy: BalancePolicy,
    org_id: str,
    request_id: str,
    model: str,
    held_cents: int,
    input_tokens: int,
    output_tokens: int,
) -> int | None:
    """Charge what the request used against its hold; the whole cents charged (None: it was
    settled already)."""
    key = f"{KIND}:{request_id}"
    if await session.scalar(select(orm.LedgerEntry.pk).where(orm.LedgerEntry.key == key)):
        return None
    price = await price_of(session, model)
    if price is None:  # unpriced since it was held: at the hold's prices, recorded with it
        held = await session.scalar(
            select(orm.LedgerEntry).where(orm.LedgerEntry.key == f"{key}:hold")
        )
        if held is None:
            return None
        price = ModelPrice(
            model,
            held.cents_per_million_input or 0,
            held.cents_per_million_output or 0,
            clock.now(),
        )
    used = cost_microcents(price, input_tokens, output_tokens)
    due = await _meter(session, org_id, model, used, clock.now())
    entry = ledger.new_entry_values(
        org_id=org_id,
        key=key,
        kind=KIND,
        amount_cents=held_cents - due,
        now=clock.now(),
        description=f"{input_tokens} input and {output_tokens} output tokens",
        resource_kind="model",
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        **_price_columns(price),
    )
    await balances.post(session, clock=clock, entries=[entry], policy=policy)
    return due


async def _meter(session: AsyncSession, org_id: str, model: str, used: int, now: datetime) -> int:
    """Add ``used`` micro-cents to the org's meter for ``model``; the whole cents now due."""
    dialect = session.get_bind().dialect.name
    make = postgresql.insert if dialect == "postgresql" else sqlite.insert
    meter = orm.TokenMeter
    row = (
        await session.execute(
            make(meter)
            .values(
                org_id=org_id, model=model, used_microcents=used, charged_cents=0, updated_at=now
            )
            .on_conflict_do_update(
                index_elements=["org_id", "model"],
                set_={"used_microcents": meter.used_microcents + used, "updated_at": now},
            )
            .returning(meter.pk, meter.used_microcents, meter.charged_cents)
        )
    ).one()
    due = max(0, int(row.used_microcents) // MICROCENTS_PER_CENT - int(row.charged_cents))
    if due:
        await session.execute(
            update(meter).where(meter.pk == row.pk).values(charged_cents=meter.charged_cents + due)
        )
    return due
