"""Meters (``orm.Meter``): opening them for the workloads that bill, and seeing each one's
workload and the price in force.

The metering controller (controllers/metering.py) visits every open meter on a schedule and
charges what it counted; meter_changes.py counts them at a workload's change of state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, exists, func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from gpuyard.core.agent_protocol import Desired
from gpuyard.core.metering import Accrual, Observed
from gpuyard.core.money import SECONDS_PER_MONTH
from gpuyard.core.workload import WorkloadKind, WorkloadState
from gpuyard.server import orm
from gpuyard.server.db import insert_on_conflict
from gpuyard.server.services import price_book

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
OPEN_CHUNK = 1000  # workloads per INSERT when opening meters (bound parameters stay few)


@dataclass(frozen=True, slots=True)
class Seen:
    """A meter's workload as found now, and the price of what it runs (None: unknown)."""

    observed: Observed
    cents_per_hour: int | None


async def open_meters(session: AsyncSession, now: datetime, *which: ColumnElement[bool]) -> None:
    """A compute meter for every instance, replica or worker workload starting or running (or
    those ``which`` says) that has none yet. It counts from the workload's creation: its first run
    is all counted."""
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
    # The workloads without a meter first, then the rows for those: one INSERT ... SELECT with
    # the anti-join inside would, on Postgres without statistics yet, probe the index it is
    # filling for every row (10,000 new meters took 8 s).
    missing = select(wl.id).where(
        wl.kind.in_(BILLABLE_KINDS),
        *(which or (wl.state.in_(BILLABLE_STATES),)),
        ~exists().where(orm.Meter.workload_id == wl.id, orm.Meter.basis == COMPUTE),
    )
    ids = list((await session.scalars(missing)).all())
    if not ids:
        return
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
        "machine_id",
        "created_at",
    ]
    for at in range(0, len(ids), OPEN_CHUNK):
        rows = select(
            wl.id,
            wl.org_id,
            wl.kind,
            wl.owner_id,
            gpus,
            *(literal(0) for _ in range(7)),
            literal(False),
            wl.created_at,
            _machine(),
            literal(now, orm.Meter.created_at.type),
        ).where(wl.id.in_(ids[at : at + OPEN_CHUNK]))
        # Two replicas opening the same meter at once make one.
        await session.execute(
            insert_on_conflict(session, orm.Meter)
            .from_select(columns, rows)
            .on_conflict_do_nothing()
        )


async def open_storage_meters(
    session: AsyncSession,
    now: datetime,
    *which: ColumnElement[bool],
    stopped_at: datetime | None = None,
) -> None:
    """A storage meter for every instance or worker stopped on purpose (its disk is kept), or
    those of them ``which`` says, that has none yet. Its price is set when it is first counted; it
    counts from when it stopped. ``stopped_at``: those ``which`` says are being stopped on purpose
    at that time (the database does not say so yet)."""
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
        select(
            wl.id, wl.org_id, wl.kind, wl.owner_id, wl.finished_at, wl.created_at, disk, _machine()
        ).where(
            wl.kind.in_(DISK_KINDS),
            *(
                (wl.desired == Desired.STOPPED.value, wl.state.in_(STOPPED_STATES))
                if stopped_at is None
                else ()
            ),
            *which,
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
            "accrued_until": min(stopped_at or finished or created, now),
            "machine_id": machine,
            "created_at": now,
        }
        for wid, org_id, kind, owner_id, finished, created, gb, machine in rows.all()
    ]
    if values:
        insert = insert_on_conflict(session, orm.Meter)
        await session.execute(insert.values(values).on_conflict_do_nothing())


def _machine() -> Any:
    """The number of the host a workload (``orm.Workload``, in the enclosing query) runs on."""
    return select(orm.Host.pk).where(orm.Host.id == orm.Workload.host_id).scalar_subquery()


# A meter's workload as the meter sees it, read in the same statement as the meter (an outer
# join: a workload that is gone reads as nulls), with what prices it: an instance's agreed price,
# a replica's cluster's GPU type and count.
_WORKLOAD = (
    orm.Workload.id.label("wl_id"),
    orm.Workload.state.label("wl_state"),
    orm.Workload.desired.label("wl_desired"),
    orm.Workload.started_at.label("wl_started_at"),
    orm.Workload.finished_at.label("wl_finished_at"),
    orm.Workload.created_at.label("wl_created_at"),
    orm.Instance.cents_per_hour.label("instance_cents_per_hour"),
    orm.Cluster.gpu_key.label("cluster_gpu_key"),
    orm.Cluster.gpus_per_replica.label("cluster_gpus_per_replica"),
)


def select_meters(*where: ColumnElement[bool]) -> Select[*tuple[Any, ...]]:
    """Meters (``COLUMNS``) with their workloads (``_WORKLOAD``), in one statement; ``observe``
    reads both. A lock taken on it (``with_for_update(of=orm.Meter)``) holds the meters only."""
    wl = orm.Workload
    return (
        select(*COLUMNS, *_WORKLOAD)
        .select_from(orm.Meter)
        .outerjoin(wl, wl.id == orm.Meter.workload_id)
        .outerjoin(
            orm.Instance,
            and_(wl.kind == WorkloadKind.INSTANCE.value, orm.Instance.workload_id == wl.id),
        )
        .outerjoin(
            orm.Cluster, and_(wl.kind == WorkloadKind.REPLICA.value, orm.Cluster.id == wl.owner_id)
        )
        .where(*where)
    )


async def observe(session: AsyncSession, meters: list[Any]) -> dict[tuple[str, str], Seen]:
    """Each meter's workload (rows of ``select_meters``) as billable on the meter's basis now (its
    state, reported start and end), and the price in force of what it runs or keeps."""
    book = await price_book.load(session)
    workers = [m.workload_id for m in meters if m.resource_kind == WorkloadKind.WORKER.value]
    held: dict[str, int] = {}  # a worker's price: the price of each GPU it holds
    if workers:
        for wid, gpu_key in await session.execute(
            select(orm.Gpu.workload_id, orm.Gpu.gpu_key).where(orm.Gpu.workload_id.in_(workers))
        ):
            if wid is not None:
                held[wid] = held.get(wid, 0) + book.cents_per_gpu_hour(gpu_key)
    seen: dict[tuple[str, str], Seen] = {}
    for m in meters:
        wid = m.wl_id
        if wid is None:
            continue  # gone
        if m.basis == STORAGE:
            stopped = m.wl_desired == Desired.STOPPED.value and m.wl_state in STOPPED_STATES
            started, finished = m.wl_started_at, m.wl_finished_at
            # Started again: the disk is counted to that start (a new run clears its end).
            restarted = started if started and (finished is None or started > finished) else None
            kept = Observed(billable=stopped, started_at=finished, finished_at=restarted)
            seen[(wid, STORAGE)] = Seen(kept, (m.disk_gb or 0) * book.storage_gb_month)
            continue
        price = m.instance_cents_per_hour
        if price is None and m.cluster_gpu_key is not None:
            price = book.cents_per_gpu_hour(m.cluster_gpu_key) * (m.cluster_gpus_per_replica or 1)
        if price is None:
            price = held.get(wid)  # a worker: unknown (kept as it was) once its GPUs are freed
        observed = Observed(
            billable=m.wl_state in BILLABLE_STATES,
            started_at=m.wl_started_at,
            finished_at=m.wl_finished_at,
        )
        seen[(wid, COMPUTE)] = Seen(observed, price)
    return seen


COLUMNS = (
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
    orm.Meter.machine_id,
    orm.Meter.created_at,
)


def accrual_of(meter: Any) -> Accrual:
    return Accrual(
        cents_per_hour=meter.cents_per_hour,
        seconds=meter.seconds,
        base_microcents=meter.base_microcents,
        total_seconds=meter.total_seconds,
        running=meter.running,
        accrued_until=meter.accrued_until,
        rate_seconds=meter.rate_seconds,
    )


def stored(acc: Accrual) -> dict[str, Any]:
    return {
        "cents_per_hour": acc.cents_per_hour,
        "seconds": acc.seconds,
        "base_microcents": acc.base_microcents,
        "total_seconds": acc.total_seconds,
        "running": acc.running,
        "accrued_until": acc.accrued_until,
    }
