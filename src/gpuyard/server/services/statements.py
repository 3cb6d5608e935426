"""An org's billing history as a statement: what it paid in (credits and top-ups, one line each;
credit transferred from or to another org too) and what it was charged (usage by UTC day and
resource, the same lines as ``ledger.usage``), over a window of time. The Vast dialect's invoice
commands read it (compat/vast_billing.py), and ``vastai show deposit`` an instance's charges.

A token request's hold and its settlement are two entries whose sum is what it cost; a statement
shows only that sum (inside its day's line), never the hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from gpuyard.core.clock import Clock
from gpuyard.core.errors import InvalidRequest
from gpuyard.server import orm
from gpuyard.server.services import ledger

MAX_LINES = 10_000  # one window's lines of either kind


@dataclass(frozen=True, slots=True)
class Payment:
    id: str
    # ``operator`` (an operator's credit), the payment provider (``stripe``) or ``transfer``
    # (credit from another org, or given to one: then ``amount_cents`` is negative)
    source: str
    amount_cents: int
    description: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Charge:
    """One day's charges of one resource (or one model's requests)."""

    day: str
    start: datetime  # the day's start, or the window's when later
    end: datetime  # the day's end, or the window's when earlier
    resource_kind: str  # instance, instance_disk, replica, worker, worker_disk, model
    resource_id: str
    instance_number: int | None  # an instance's integer id (what the Vast dialect shows)
    model: str | None
    gpu_seconds: int
    input_tokens: int
    output_tokens: int
    characters: int
    cost_cents: int


def _window(since: datetime, until: datetime) -> None:
    if since > until:
        raise InvalidRequest("the start date must not be after the end date", param="start_date")


async def payments(
    session: AsyncSession, *, org_id: str, since: datetime, until: datetime
) -> list[Payment]:
    """Credits, paid top-ups and transfers over [since, until], oldest first."""
    _window(since, until)
    e = orm.LedgerEntry
    rows = await session.execute(
        select(e.id, e.key, e.amount_cents, e.description, e.created_at)
        .where(
            e.org_id == org_id,
            e.kind.in_(("credit", "transfer")),
            e.created_at >= since,
            e.created_at <= until,
        )
        .order_by(e.created_at, e.pk)
        .limit(MAX_LINES)
    )
    found = []
    for id_, key, cents, description, created in rows.all():
        source = "operator"
        if key.startswith("transfer:"):
            source = "transfer"
        elif key.startswith("topup:"):
            provider = await session.scalar(
                select(orm.TopUp.provider).where(orm.TopUp.id == key.split(":", 1)[1])
            )
            source = provider or "top-up"
        found.append(Payment(id_, source, cents, description, created))
    return found


async def charges(
    session: AsyncSession, *, clock: Clock, org_id: str, since: datetime, until: datetime
) -> list[Charge]:
    """What the org was charged over [since, until], by UTC day and resource, oldest first;
    lines that came to nothing are left out."""
    _window(since, until)
    _, _, lines = await ledger.usage(session, clock=clock, org_id=org_id, since=since, until=until)
    vm_ids = {u.resource_id for u in lines if u.resource_kind in ("instance", "instance_disk")}
    numbers: dict[str, int] = {}
    if vm_ids:
        rows = await session.execute(
            select(orm.Instance.id, orm.Instance.pk).where(orm.Instance.id.in_(sorted(vm_ids)))
        )
        numbers = {id_: pk for id_, pk in rows.all()}
    found = []
    for u in lines[:MAX_LINES]:
        if not u.cost_cents:
            continue
        day = datetime.fromisoformat(u.day).replace(tzinfo=UTC)
        found.append(
            Charge(
                day=u.day,
                start=max(day, since),
                end=min(day.replace(hour=23, minute=59, second=59), until),
                resource_kind=u.resource_kind,
                resource_id=u.resource_id,
                instance_number=numbers.get(u.resource_id),
                model=u.model,
                gpu_seconds=u.gpu_seconds,
                input_tokens=u.input_tokens,
                output_tokens=u.output_tokens,
                characters=u.characters,
                cost_cents=u.cost_cents,
            )
        )
    return found


@dataclass(frozen=True, slots=True)
class Charged:
    """What one resource (an instance) has been charged over its life, in whole cents."""

    gpu_cents: int
    disk_cents: int
    gpu_seconds: int
    last_charged_at: datetime | None


async def charged(session: AsyncSession, *, org_id: str, resource_id: str) -> Charged:
    """The GPU time and the disk the org was charged for ``resource_id``, all periods."""
    e = orm.LedgerEntry
    rows = await session.execute(
        select(
            e.resource_kind,
            func.coalesce(func.sum(e.amount_cents), 0),
            func.coalesce(func.sum(e.gpu_seconds), 0),
            func.max(e.created_at),
        )
        .where(e.org_id == org_id, e.resource_id == resource_id, e.kind.in_(ledger.CHARGES))
        .group_by(e.resource_kind)
    )
    gpu = disk = seconds = 0
    last: datetime | None = None
    for kind, cents, used, at in rows.all():
        if (kind or "").endswith("_disk"):
            disk -= int(cents)
        else:
            gpu -= int(cents)
            seconds += int(used or 0)
        last = at if last is None or (at is not None and at > last) else last
    return Charged(gpu, disk, seconds, last)
