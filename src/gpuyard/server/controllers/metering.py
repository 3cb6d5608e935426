"""Meters every running instance and cluster replica per second and settles it into the ledger.

One meter row per billable workload (``orm.Meter``), opened the first time the workload is seen
starting or running. Each visit (every ``settle_seconds``, or at once when its workload's state
changes) counts the whole seconds it ran since the last (core/metering.py), at the price in force
(an instance's price agreed when it was rented; a replica's from the price book), and charges
``floor(used) - already charged`` whole cents as one ledger entry keyed by (workload, period).

Nothing here is slow or external, so a batch is claimed and settled in **one** transaction
(``FOR UPDATE SKIP LOCKED`` on Postgres, SQLite's single writer): a meter's new count and its
ledger entry commit together or not at all. A replica killed mid-pass leaves the rows as they
were, and the next pass, on any replica, counts from the same point; two replicas never hold the
same meter, and the unique entry key would refuse a second charge for a period anyway. The
schedule, fairness and loop are the reconciler base's; its lease is not needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, func, literal, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from gpuyard.core.metering import Accrual, Observed, accrue, reprice
from gpuyard.core.workload import WorkloadKind, WorkloadState
from gpuyard.server import orm
from gpuyard.server.controllers.base import Reconciler
from gpuyard.server.db import write_session
from gpuyard.server.services import ledger, price_book

BILLABLE_KINDS = (WorkloadKind.INSTANCE.value, WorkloadKind.REPLICA.value)
BILLABLE_STATES = (WorkloadState.STARTING.value, WorkloadState.RUNNING.value)
DEFAULT_SETTLE_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class _Seen:
    """A meter's workload as found now, and the price of what it runs (None: unknown)."""

    observed: Observed
    cents_per_hour: int | None


class MeteringController(Reconciler[orm.Meter, int, None]):
    name = "metering"
    model = orm.Meter
    batch_size = 1000

    def __init__(self, *, settle_seconds: float = DEFAULT_SETTLE_SECONDS, **kw: Any) -> None:
        super().__init__(**kw)
        self.revisit = settle_seconds  # type: ignore[misc]
        self._mid_pass = False

    def due(self) -> ColumnElement[bool]:
        return orm.Meter.closed_at.is_(None)

    def snapshot(self, row: orm.Meter) -> int:
        return row.pk

    async def apply(self, session: AsyncSession, row: orm.Meter, item: int, result: None) -> None:
        await self.settle(session, [row], self.clock.now())

    async def step(self) -> int:
        """Open meters for newly running workloads (once per pass), then claim one batch of due
        meters and settle it, all in one transaction; the number of meters settled."""
        now = self.clock.now()
        async with write_session(self.sessions) as session:
            if not self._mid_pass:
                await open_meters(session, now)
            meters = list(
                (
                    await session.scalars(
                        select(orm.Meter)
                        .where(*self._ready(now))
                        .order_by(orm.Meter.next_run_at.asc().nulls_first(), orm.Meter.pk)
                        .limit(self.batch_size)
                        .with_for_update(skip_locked=True)
                    )
                ).all()
            )
            if meters:
                await self.settle(session, meters, now)
        self._mid_pass = len(meters) >= self.batch_size
        for _ in meters:
            self._count("applied")
        return len(meters)

    async def settle(self, session: AsyncSession, meters: list[orm.Meter], now: datetime) -> None:
        seen = await _observe(session, meters)
        entries = []
        for meter in meters:
            found = seen.get(meter.workload_id, _Seen(Observed(billable=False, gone=True), None))
            acc = _accrual(meter)
            if found.cents_per_hour is not None:
                acc = reprice(acc, found.cents_per_hour)
            acc = accrue(acc, found.observed, now)
            due = acc.due_cents(meter.charged_cents)
            if due:
                entries.append(_charge(meter, acc, due, now))
            _store(meter, acc)
            meter.next_run_at = self._after(self.revisit or DEFAULT_SETTLE_SECONDS)
            if found.observed.gone and not acc.running:
                meter.closed_at = now
        session.add_all(entries)
        await session.flush()


async def open_meters(session: AsyncSession, now: datetime) -> None:
    """A meter for every instance or replica workload starting or running that has none yet
    (one statement; two replicas opening the same meter at once make one)."""
    wl = orm.Workload
    gpus = func.coalesce(
        select(orm.Instance.num_gpus).where(orm.Instance.workload_id == wl.id).scalar_subquery(),
        select(orm.Cluster.gpus_per_replica).where(orm.Cluster.id == wl.owner_id).scalar_subquery(),
        1,
    )
    missing = select(
        wl.id,
        wl.org_id,
        wl.kind,
        wl.owner_id,
        gpus,
        literal(0),
        literal(0),
        literal(0),
        literal(0),
        literal(0),
        literal(0),
        literal(0),
        literal(False),
        wl.created_at,
        literal(now, orm.Meter.created_at.type),
    ).where(
        wl.kind.in_(BILLABLE_KINDS),
        wl.state.in_(BILLABLE_STATES),
        ~exists().where(orm.Meter.workload_id == wl.id),
    )
    columns = [
        "workload_id",
        "org_id",
        "resource_kind",
        "resource_id",
        "num_gpus",
        "cents_per_hour",
        "seconds",
        "base_microcents",
        "total_seconds",
        "ledgered_seconds",
        "charged_cents",
        "period",
        "running",
        "accrued_until",
        "created_at",
    ]
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    await session.execute(insert(orm.Meter).from_select(columns, missing).on_conflict_do_nothing())


async def _observe(session: AsyncSession, meters: list[orm.Meter]) -> dict[str, _Seen]:
    """Each meter's workload (state, reported start and end) and the price of what it runs."""
    ids = [m.workload_id for m in meters]
    wl = orm.Workload
    rows = await session.execute(
        select(
            wl.id,
            wl.state,
            wl.started_at,
            wl.finished_at,
            orm.Instance.cents_per_hour,
            orm.Cluster.gpu_key,
            orm.Cluster.gpus_per_replica,
        )
        .outerjoin(
            orm.Instance,
            and_(wl.kind == WorkloadKind.INSTANCE.value, orm.Instance.workload_id == wl.id),
        )
        .outerjoin(
            orm.Cluster, and_(wl.kind == WorkloadKind.REPLICA.value, orm.Cluster.id == wl.owner_id)
        )
        .where(wl.id.in_(ids))
    )
    book = await price_book.load(session)
    seen: dict[str, _Seen] = {}
    for wid, state, started, finished, instance_price, gpu_key, gpus in rows.all():
        price = instance_price
        if price is None and gpu_key is not None:
            price = book.cents_per_gpu_hour(gpu_key) * (gpus or 1)
        observed = Observed(
            billable=state in BILLABLE_STATES, started_at=started, finished_at=finished
        )
        seen[wid] = _Seen(observed, price)
    return seen


def _accrual(meter: orm.Meter) -> Accrual:
    return Accrual(
        cents_per_hour=meter.cents_per_hour,
        seconds=meter.seconds,
        base_microcents=meter.base_microcents,
        total_seconds=meter.total_seconds,
        running=meter.running,
        accrued_until=meter.accrued_until,
    )


def _store(meter: orm.Meter, acc: Accrual) -> None:
    meter.cents_per_hour = acc.cents_per_hour
    meter.seconds = acc.seconds
    meter.base_microcents = acc.base_microcents
    meter.total_seconds = acc.total_seconds
    meter.running = acc.running
    meter.accrued_until = acc.accrued_until


def _charge(meter: orm.Meter, acc: Accrual, cents: int, now: datetime) -> orm.LedgerEntry:
    """The ledger entry for ``cents`` more, keyed by (workload, period); moves the meter on."""
    meter.period += 1
    seconds = acc.total_seconds - meter.ledgered_seconds
    entry = ledger.new_entry(
        org_id=meter.org_id,
        key=f"usage:{meter.workload_id}:{meter.period}",
        kind="usage",
        amount_cents=-cents,
        now=now,
        resource_kind=meter.resource_kind,
        resource_id=meter.resource_id,
        gpu_seconds=seconds * meter.num_gpus,
        cents_per_hour=acc.cents_per_hour,
        period_start=meter.settled_at or meter.created_at,
        period_end=acc.accrued_until,
    )
    meter.charged_cents += cents
    meter.ledgered_seconds = acc.total_seconds
    meter.settled_at = acc.accrued_until
    return entry
