"""Meters every running instance, cluster replica and serverless worker per second, and the disk
of every stopped instance and cold worker, and settles them into the ledger.

A workload has up to two meter rows (``orm.Meter``): a ``compute`` meter, opened the first time
it is seen starting or running, and a ``storage`` meter, opened the first time it is seen stopped
on purpose (an instance or a serverless worker whose desired state is ``stopped``: its disk is
kept). Each visit (every ``settle_seconds``, or at once when its workload's state changes) counts
the whole seconds it was billable since the last (core/metering.py), at the price in force (an
instance's price agreed when it was rented; a replica's and a worker's GPUs from the price book;
disk at the book's cents per GB-month), and charges ``floor(used) - already charged`` whole cents
as one ledger entry keyed by (workload, basis, period).

Nothing here is slow or external, so a batch is claimed and settled in **one** transaction
(``FOR UPDATE SKIP LOCKED`` on Postgres, SQLite's single writer): a meter's new count and its
ledger entry commit together or not at all. A replica killed mid-pass leaves the rows as they
were, and the next pass, on any replica, counts from the same point; two replicas never hold the
same meter, and the unique entry key would refuse a second charge for a period anyway. The
schedule, fairness and loop are the reconciler base's; its lease is not needed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, func, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from gpuyard.core.agent_protocol import Desired
from gpuyard.core.metering import Accrual, Observed, accrue, reprice
from gpuyard.core.money import SECONDS_PER_MONTH, BalancePolicy
from gpuyard.core.workload import WorkloadKind, WorkloadState
from gpuyard.server import orm
from gpuyard.server.controllers.base import Reconciler
from gpuyard.server.db import write_session
from gpuyard.server.services import balances, ledger, price_book

BILLABLE_KINDS = (
    WorkloadKind.INSTANCE.value,
    WorkloadKind.REPLICA.value,
    WorkloadKind.WORKER.value,
)
BILLABLE_STATES = (WorkloadState.STARTING.value, WorkloadState.RUNNING.value)
# Kinds whose disk is kept while stopped (a replica is removed, never stopped), and the states a
# stopped workload's disk is charged in.
DISK_KINDS = (WorkloadKind.INSTANCE.value, WorkloadKind.WORKER.value)
STOPPED_STATES = (
    WorkloadState.STOPPED.value,
    WorkloadState.EXITED.value,
    WorkloadState.FAILED.value,
)
COMPUTE, STORAGE = "compute", "storage"
DEFAULT_DISK_GB = 10  # what an instance or a worker without a stated disk size gets
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

    def __init__(
        self,
        *,
        settle_seconds: float = DEFAULT_SETTLE_SECONDS,
        policy: BalancePolicy | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        self.policy = policy or BalancePolicy()
        self.revisit = settle_seconds  # type: ignore[misc]
        self._mid_pass = False

    def due(self) -> ColumnElement[bool]:
        return orm.Meter.closed_at.is_(None)

    def snapshot(self, row: orm.Meter) -> int:
        return row.pk

    async def apply(self, session: AsyncSession, row: orm.Meter, item: int, result: None) -> None:
        found = await session.execute(select(*_COLUMNS).where(orm.Meter.pk == row.pk))
        await self.settle(session, list(found.all()), self.clock.now())

    async def step(self) -> int:
        """Open meters for newly running workloads (once per pass), then claim one batch of due
        meters and settle it, all in one transaction; the number of meters settled."""
        now = self.clock.now()
        async with write_session(self.sessions) as session:
            if not self._mid_pass:
                await open_meters(session, now)
                await open_storage_meters(session, now)
            meters = list(
                (
                    await session.execute(
                        select(*_COLUMNS)
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
        if self.metrics is not None and meters:
            self.metrics.controller_runs.labels(self.name, "applied").inc(len(meters))
        return len(meters)

    async def settle(self, session: AsyncSession, meters: list[Any], now: datetime) -> None:
        """Count, charge and reschedule ``meters`` (rows of ``_COLUMNS``, locked by the caller):
        one bulk update of the meters and one bulk insert of the ledger entries."""
        seen = await _observe(session, meters)
        next_run = self._after(self.revisit or DEFAULT_SETTLE_SECONDS)
        gone = _Seen(Observed(billable=False, gone=True), None)
        updates: list[dict[str, Any]] = []
        entries: list[dict[str, Any]] = []
        for meter in meters:
            found = seen.get((meter.workload_id, meter.basis), gone)
            acc = _accrual(meter)
            if found.cents_per_hour is not None:
                acc = reprice(acc, found.cents_per_hour)
            acc = accrue(acc, found.observed, now)
            change = _stored(acc)
            due = acc.due_cents(meter.charged_cents)
            if due:
                entry, charged = _charge(meter, acc, due, now)
                entries.append(entry)
                change.update(charged)
            change["pk"] = meter.pk
            change["next_run_at"] = next_run
            change["closed_at"] = now if found.observed.gone and not acc.running else None
            updates.append(change)
        await balances.post(session, clock=self.clock, entries=entries, policy=self.policy)
        for same in _grouped(updates):
            await session.execute(update(orm.Meter), same)


async def open_meters(session: AsyncSession, now: datetime) -> None:
    """A compute meter for every instance, replica or worker workload starting or running that
    has none yet (one statement; two replicas opening the same meter at once make one)."""
    wl = orm.Workload
    held = select(func.count()).where(orm.Gpu.workload_id == wl.id).scalar_subquery()
    gpus = func.coalesce(
        select(orm.Instance.num_gpus).where(orm.Instance.workload_id == wl.id).scalar_subquery(),
        select(orm.Cluster.gpus_per_replica)
        .where(wl.kind == WorkloadKind.REPLICA.value, orm.Cluster.id == wl.owner_id)
        .scalar_subquery(),
        func.nullif(held, 0),
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
        ~exists().where(orm.Meter.workload_id == wl.id, orm.Meter.basis == COMPUTE),
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


async def open_storage_meters(session: AsyncSession, now: datetime) -> None:
    """A storage meter for every instance or worker stopped on purpose (its disk is kept) that
    has none yet. Its price is set at its first settlement; it counts from when it stopped."""
    wl = orm.Workload
    disk = func.coalesce(
        select(orm.Instance.disk_gb).where(orm.Instance.workload_id == wl.id).scalar_subquery(),
        select(orm.Template.disk_space)
        .join(orm.Workergroup, orm.Workergroup.template_id == orm.Template.id)
        .join(orm.ServerlessWorker, orm.ServerlessWorker.workergroup_id == orm.Workergroup.id)
        .where(orm.ServerlessWorker.workload_id == wl.id)
        .limit(1)
        .scalar_subquery(),
    )
    rows = await session.execute(
        select(wl.id, wl.org_id, wl.kind, wl.owner_id, wl.finished_at, wl.created_at, disk).where(
            wl.kind.in_(DISK_KINDS),
            wl.desired == Desired.STOPPED.value,
            wl.state.in_(STOPPED_STATES),
            ~exists().where(orm.Meter.workload_id == wl.id, orm.Meter.basis == STORAGE),
        )
    )
    values = [
        {
            "workload_id": wid,
            "basis": STORAGE,
            "org_id": org_id,
            "resource_kind": f"{kind}_disk",
            "resource_id": owner_id,
            "num_gpus": 0,
            "disk_gb": max(1, math.ceil(gb)) if gb else DEFAULT_DISK_GB,
            "cents_per_hour": 0,
            "rate_seconds": SECONDS_PER_MONTH,
            "seconds": 0,
            "base_microcents": 0,
            "total_seconds": 0,
            "ledgered_seconds": 0,
            "charged_cents": 0,
            "period": 0,
            "running": False,
            "accrued_until": min(finished or created, now),
            "created_at": now,
        }
        for wid, org_id, kind, owner_id, finished, created, gb in rows.all()
    ]
    if values:
        dialect = session.get_bind().dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        await session.execute(insert(orm.Meter).values(values).on_conflict_do_nothing())


async def _observe(session: AsyncSession, meters: list[Any]) -> dict[tuple[str, str], _Seen]:
    """Each meter's workload as billable on the meter's basis now (its state, reported start and
    end), and the price in force of what it runs or keeps."""
    wl = orm.Workload
    ids = list({m.workload_id for m in meters})
    rows = await session.execute(
        select(
            wl.id,
            wl.state,
            wl.desired,
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
    held: dict[str, int] = {}  # a worker's price: the price of each GPU it holds
    for wid, gpu_key in await session.execute(
        select(orm.Gpu.workload_id, orm.Gpu.gpu_key).where(orm.Gpu.workload_id.in_(ids))
    ):
        if wid is not None:
            held[wid] = held.get(wid, 0) + book.cents_per_gpu_hour(gpu_key)
    disks = {m.workload_id: m.disk_gb for m in meters if m.basis == STORAGE}
    seen: dict[tuple[str, str], _Seen] = {}
    for wid, state, desired, started, finished, instance_price, gpu_key, gpus in rows.all():
        price = instance_price
        if price is None and gpu_key is not None:
            price = book.cents_per_gpu_hour(gpu_key) * (gpus or 1)
        if price is None:
            price = held.get(wid)  # a worker: unknown (kept as it was) once its GPUs are freed
        observed = Observed(
            billable=state in BILLABLE_STATES, started_at=started, finished_at=finished
        )
        seen[(wid, COMPUTE)] = _Seen(observed, price)
        if wid in disks:
            stopped = desired == Desired.STOPPED.value and state in STOPPED_STATES
            # Started again: the disk is counted to that start (a new run clears its end).
            restarted = started if started and (finished is None or started > finished) else None
            kept = Observed(billable=stopped, started_at=finished, finished_at=restarted)
            seen[(wid, STORAGE)] = _Seen(kept, (disks[wid] or 0) * book.storage_gb_month)
    return seen


_COLUMNS = (
    orm.Meter.pk,
    orm.Meter.workload_id,
    orm.Meter.basis,
    orm.Meter.org_id,
    orm.Meter.resource_kind,
    orm.Meter.resource_id,
    orm.Meter.num_gpus,
    orm.Meter.disk_gb,
    orm.Meter.cents_per_hour,
    orm.Meter.rate_seconds,
    orm.Meter.seconds,
    orm.Meter.base_microcents,
    orm.Meter.total_seconds,
    orm.Meter.ledgered_seconds,
    orm.Meter.charged_cents,
    orm.Meter.period,
    orm.Meter.running,
    orm.Meter.accrued_until,
    orm.Meter.settled_at,
    orm.Meter.created_at,
)


def _accrual(meter: Any) -> Accrual:
    return Accrual(
        cents_per_hour=meter.cents_per_hour,
        seconds=meter.seconds,
        base_microcents=meter.base_microcents,
        total_seconds=meter.total_seconds,
        running=meter.running,
        accrued_until=meter.accrued_until,
        rate_seconds=meter.rate_seconds,
    )


def _stored(acc: Accrual) -> dict[str, Any]:
    return {
        "cents_per_hour": acc.cents_per_hour,
        "seconds": acc.seconds,
        "base_microcents": acc.base_microcents,
        "total_seconds": acc.total_seconds,
        "running": acc.running,
        "accrued_until": acc.accrued_until,
    }


def _charge(
    meter: Any, acc: Accrual, cents: int, now: datetime
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ledger entry for ``cents`` more, keyed by (workload, basis, period), with the price in
    force, and what the meter records of it."""
    period = meter.period + 1
    if meter.basis == STORAGE:
        disk = meter.disk_gb or 1
        prefix = "storage"
        price: dict[str, Any] = {
            "disk_gb": disk,
            "cents_per_gb_month": acc.cents_per_hour // disk,
        }
    else:
        prefix = "usage"
        price = {
            "gpu_seconds": (acc.total_seconds - meter.ledgered_seconds) * meter.num_gpus,
            "cents_per_hour": acc.cents_per_hour,
        }
    entry = ledger.new_entry_values(
        org_id=meter.org_id,
        key=f"{prefix}:{meter.workload_id}:{period}",
        kind="usage",
        amount_cents=-cents,
        now=now,
        resource_kind=meter.resource_kind,
        resource_id=meter.resource_id,
        period_start=meter.settled_at or meter.created_at,
        period_end=acc.accrued_until,
        **price,
    )
    charged = {
        "period": period,
        "charged_cents": meter.charged_cents + cents,
        "ledgered_seconds": acc.total_seconds,
        "settled_at": acc.accrued_until,
    }
    return entry, charged


def _grouped(updates: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Updates with the same columns together (one executemany each)."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for change in updates:
        groups.setdefault(tuple(sorted(change)), []).append(change)
    return list(groups.values())
