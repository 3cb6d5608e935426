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
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gpuyard.core.clock import Clock
from gpuyard.core.errors import InsufficientQuota, InvalidRequest, NotFound
from gpuyard.core.money import MICROCENTS_PER_CENT, BalancePolicy
from gpuyard.server import orm
from gpuyard.server.db import insert_on_conflict
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
    cents_per_million_characters: int = 0  # text to speech: its input's characters


def _domain(row: orm.ModelPrice) -> ModelPrice:
    return ModelPrice(
        row.model,
        row.cents_per_million_input,
        row.cents_per_million_output,
        row.updated_at,
        row.cents_per_million_characters or 0,
    )


async def list_prices(session: AsyncSession) -> list[ModelPrice]:
    rows = await session.scalars(select(orm.ModelPrice).order_by(orm.ModelPrice.model))
    return [_domain(r) for r in rows]


async def price_of(session: AsyncSession, model: str) -> ModelPrice | None:
    row = await session.scalar(select(orm.ModelPrice).where(orm.ModelPrice.model == model))
    return _domain(row) if row is not None else None


PRICED_MODELS_TTL_S = 1.0  # how stale another process's price change may be seen


class PricedModels:
    """The names of the priced models, read from the price book at most once per ``ttl``
    seconds (on the injected clock) and at once after ``forget``: the gateway asks it before
    opening a hold's transaction, so a request to an unpriced model costs no database call. A
    price set in this process is seen by its next request (``forget`` once the route's
    transaction has ended, deps.prices_changed); one set by another server process, within
    ``ttl``."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        ttl: float = PRICED_MODELS_TTL_S,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._ttl = timedelta(seconds=ttl)
        self._names: frozenset[str] | None = None
        self._read_at: datetime | None = None

    def forget(self) -> None:
        self._names = None

    async def priced(self, model: str) -> bool:
        now = self._clock.now()
        if self._names is None or self._read_at is None or now - self._read_at >= self._ttl:
            async with self._sessions() as session:
                rows = await session.scalars(select(orm.ModelPrice.model))
                self._names, self._read_at = frozenset(rows), now
        return model in self._names


async def set_price(
    session: AsyncSession,
    *,
    clock: Clock,
    model: str,
    input_cents: int,
    output_cents: int,
    character_cents: int = 0,
) -> ModelPrice:
    if not model or len(model) > MAX_MODEL:
        raise InvalidRequest(f"model must be 1 to {MAX_MODEL} characters", param="model")
    for name, cents in (
        ("cents_per_million_input", input_cents),
        ("cents_per_million_output", output_cents),
        ("cents_per_million_characters", character_cents),
    ):
        if not 0 <= cents <= MAX_PRICE:
            raise InvalidRequest(f"{name} must be 0 to {MAX_PRICE}", param=name)
    row = await session.scalar(select(orm.ModelPrice).where(orm.ModelPrice.model == model))
    if row is None:
        row = orm.ModelPrice(model=model, updated_at=clock.now())
        session.add(row)
    row.cents_per_million_input, row.cents_per_million_output = input_cents, output_cents
    row.cents_per_million_characters = character_cents
    row.updated_at = clock.now()
    await session.flush()
    return _domain(row)


async def delete_price(session: AsyncSession, *, model: str) -> None:
    row = await session.scalar(select(orm.ModelPrice).where(orm.ModelPrice.model == model))
    if row is None:
        raise NotFound(f"no price set for model {model}", code="price_not_found")
    await session.delete(row)


def cost_microcents(
    price: ModelPrice, input_tokens: int, output_tokens: int, characters: int = 0
) -> int:
    """Exact: ``c`` cents per million tokens (or characters) is ``c`` micro-cents a token."""
    return (
        price.cents_per_million_input * input_tokens
        + price.cents_per_million_output * output_tokens
        + price.cents_per_million_characters * characters
    )


def hold_cents(
    price: ModelPrice, body_bytes: int, max_tokens: int | None, characters: int = 0
) -> int:
    """The most a request could cost, in whole cents (at least one)."""
    prompt = body_bytes // BYTES_PER_TOKEN + 1
    output = max_tokens if max_tokens is not None else DEFAULT_HOLD_OUTPUT_TOKENS
    most = cost_microcents(price, prompt, output, characters)
    return max(1, -(-most // MICROCENTS_PER_CENT))


def _price_columns(price: ModelPrice) -> dict[str, object]:
    return {
        "model": price.model,
        "cents_per_million_input": price.cents_per_million_input,
        "cents_per_million_output": price.cents_per_million_output,
        "cents_per_million_characters": price.cents_per_million_characters or None,
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
    characters: int = 0,
) -> int:
    """Take the request's hold (0: the model is not priced), recorded in ``token_holds`` until it
    is settled; InsufficientQuota, nothing taken, when the balance does not cover it."""
    price = await price_of(session, model)
    if price is None:
        return 0
    cents = hold_cents(price, body_bytes, max_tokens, characters)
    now = clock.now()
    entry = ledger.new_entry_values(
        org_id=org_id,
        key=f"{KIND}:{request_id}:hold",
        kind=KIND,
        amount_cents=-cents,
        now=now,
        description="held until the request ends",
        resource_kind="model",
        **_price_columns(price),
    )
    if not await balances.debit_if_covered(session, clock=clock, entry=entry, policy=policy):
        raise InsufficientQuota(
            "You exceeded your current quota: the organization's balance does not cover this "
            "request. Add credit to continue."
        )
    session.add(
        orm.TokenHold(
            request_id=request_id,
            org_id=org_id,
            model=model,
            held_cents=cents,
            characters=characters,
            created_at=now,
            next_run_at=now + timedelta(seconds=policy.hold_seconds),
        )
    )
    await session.flush()
    return cents


@dataclass(frozen=True, slots=True)
class Used:
    input_tokens: int = 0
    output_tokens: int = 0
    characters: int = 0

    def describe(self) -> str:
        said = f"{self.input_tokens} input and {self.output_tokens} output tokens"
        return f"{said}, {self.characters} characters" if self.characters else said


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
    characters: int = 0,
) -> int | None:
    """Charge what the request used against its hold; the whole cents charged (None: it was
    settled already). Its ``token_holds`` row is locked first and deleted with the charge, so the
    hold sweeper and a settlement never both act on one hold; one the sweeper released already
    (its server was taken for dead) is charged what it used, the hold having gone back."""
    key = f"{KIND}:{request_id}"
    held = await session.scalar(
        select(orm.TokenHold).where(orm.TokenHold.request_id == request_id).with_for_update()
    )
    if held is not None:
        held_cents = held.held_cents
        await session.delete(held)
    elif await _written(session, key):
        return None
    elif await _written(session, f"{key}:released"):
        held_cents = 0
    used = Used(input_tokens, output_tokens, characters)
    return await _charge(
        session, clock, policy, org_id, request_id, model, held_cents, used, used.describe()
    )


async def sweep(
    session: AsyncSession, *, clock: Clock, policy: BalancePolicy, hold: orm.TokenHold
) -> int | None:
    """A hold its server never settled (``hold`` locked by the caller): settled from the
    request's log when the gateway logged its usage (the request was served), else released in
    full, as an authorization never captured is (what cannot be shown used is not charged). The
    whole cents charged; None: released."""
    logged = await session.scalar(
        select(orm.RequestLog).where(orm.RequestLog.id == hold.request_id)
    )
    await session.delete(hold)
    key = f"{KIND}:{hold.request_id}"
    if logged is not None and logged.status < 400:
        used = Used(logged.prompt_tokens or 0, logged.completion_tokens or 0, hold.characters or 0)
        return await _charge(
            session, clock, policy, hold.org_id, hold.request_id, hold.model, hold.held_cents,
            used, f"{used.describe()} (from the request's log; its server stopped first)",
        )  # fmt: skip
    entry = ledger.new_entry_values(
        org_id=hold.org_id,
        key=f"{key}:released",
        kind=KIND,
        amount_cents=hold.held_cents,
        now=clock.now(),
        description="hold released: the request's end was never recorded",
        resource_kind="model",
        model=hold.model,
    )
    await balances.post(session, clock=clock, entries=[entry], policy=policy)
    return None


async def _written(session: AsyncSession, key: str) -> bool:
    found = await session.scalar(select(orm.LedgerEntry.pk).where(orm.LedgerEntry.key == key))
    return found is not None


async def _charge(
    session: AsyncSession,
    clock: Clock,
    policy: BalancePolicy,
    org_id: str,
    request_id: str,
    model: str,
    held_cents: int,
    used: Used,
    description: str,
) -> int:
    """Post ``tokens:<request>``: the hold back, less the whole cents ``used`` now makes due."""
    price = await price_of(session, model)
    if price is None:  # unpriced since it was held: at the hold's prices, recorded with it
        held = await session.scalar(
            select(orm.LedgerEntry).where(orm.LedgerEntry.key == f"{KIND}:{request_id}:hold")
        )
        price = ModelPrice(
            model,
            (held.cents_per_million_input or 0) if held else 0,
            (held.cents_per_million_output or 0) if held else 0,
            clock.now(),
            (held.cents_per_million_characters or 0) if held else 0,
        )
    cost = cost_microcents(price, used.input_tokens, used.output_tokens, used.characters)
    due = await _meter(session, org_id, model, cost, clock.now())
    entry = ledger.new_entry_values(
        org_id=org_id,
        key=f"{KIND}:{request_id}",
        kind=KIND,
        amount_cents=held_cents - due,
        now=clock.now(),
        description=description,
        resource_kind="model",
        input_tokens=used.input_tokens,
        output_tokens=used.output_tokens,
        characters=used.characters or None,
        **_price_columns(price),
    )
    await balances.post(session, clock=clock, entries=[entry], policy=policy)
    return due


async def _meter(session: AsyncSession, org_id: str, model: str, used: int, now: datetime) -> int:
    """Add ``used`` micro-cents to the org's meter for ``model``; the whole cents now due."""
    meter = orm.TokenMeter
    row = (
        await session.execute(
            insert_on_conflict(session, meter)
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
