"""Counting a workload's meters up to a change of its state, in the transaction that records it.

``follow`` runs where a workload's new state is recorded (``workloads.apply_status``) or its
removal (``workloads.forget``), before the row takes the change (the database still holds what
was before). It counts the workload's **compute** meter to the reported start or end, opening one
if the workload has none, so a run that starts and ends between two visits of the metering
controller is counted all the same, each second once; and its **storage** meter (the disk an
instance or a worker keeps while stopped on purpose) to the same point: a disk stops being
charged at the reported start of a new run, and from the reported end when it is stopped again,
however many changes happen between two visits. The controller settles both now.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from gpuyard.core.agent_protocol import Desired
from gpuyard.core.metering import Accrual, Observed, accrue, reprice
from gpuyard.server import orm
from gpuyard.server.services import wakeups
from gpuyard.server.services.meters import (
    BILLABLE_KINDS,
    BILLABLE_STATES,
    COMPUTE,
    DISK_KINDS,
    STOPPED_STATES,
    STORAGE,
    accrual_of,
    observe,
    open_meters,
    open_storage_meters,
    select_meters,
    stored,
)


async def follow(
    session: AsyncSession, row: orm.Workload, after: Observed, now: datetime, *, state: str | None
) -> None:
    """Count ``row``'s meters up to its change to ``after`` and ``state`` (None: the workload is
    gone), and have the controller settle them now."""
    if row.kind not in BILLABLE_KINDS:
        return
    await _follow_compute(session, row, after, now)
    if row.kind in DISK_KINDS:
        await _follow_storage(session, row, after, now, state)
    wakeups.note_table(session, orm.Meter)


async def _follow_compute(
    session: AsyncSession, row: orm.Workload, after: Observed, now: datetime
) -> None:
    """A workload that runs (or ran) and has no meter gets one; a run that began and ended since
    the last report (``after`` not billable, with a new start) is counted whole."""
    before = Observed(
        billable=row.state in BILLABLE_STATES,
        started_at=row.started_at,
        finished_at=row.finished_at,
    )
    new_run = _new_run(row, after) and not after.billable
    if not (before.billable or after.billable or new_run):
        return  # it never ran: nothing to count
    meter = await _locked(session, row.id, COMPUTE)
    if meter is None:
        await open_meters(session, now, orm.Workload.id == row.id)
        meter = await _locked(session, row.id, COMPUTE)
        if meter is None:
            return
    acc = await _priced(session, meter)
    # What was before, up to when the change happened (a start's or an end's reported time).
    changed_at = _until(after.started_at if after.billable or new_run else after.finished_at, now)
    acc = accrue(acc, before, changed_at)
    if new_run:  # it ran from its new start to its end between two reports
        ran = Observed(billable=True, started_at=after.started_at)
        acc = accrue(acc, ran, _until(after.finished_at, now))
    await _save(session, meter, accrue(acc, after, now))


async def _follow_storage(
    session: AsyncSession, row: orm.Workload, after: Observed, now: datetime, state: str | None
) -> None:
    """The disk is charged while its meter runs; it pauses at a new run's start (or the
    workload's removal) and runs again from a stop on purpose."""
    kept = state in STOPPED_STATES and row.desired == Desired.STOPPED.value
    meter = await _locked(session, row.id, STORAGE)
    if meter is None:
        if not kept:
            return  # never stopped on purpose: no disk kept
        await open_storage_meters(
            session, now, orm.Workload.id == row.id, stopped_at=_until(after.finished_at, now)
        )
        meter = await _locked(session, row.id, STORAGE)
        if meter is None:
            return
    restarted = _new_run(row, after)
    paused_at = _until(after.started_at if restarted else after.finished_at, now)
    acc = accrue(await _priced(session, meter), Observed(billable=meter.running), paused_at)
    if restarted or state is None:  # its disk is in use (or gone) from here
        acc = accrue(acc, Observed(billable=False, finished_at=paused_at), paused_at)
    acc = accrue(acc, Observed(billable=kept, started_at=after.finished_at), now)
    await _save(session, meter, acc)


def _new_run(row: orm.Workload, after: Observed) -> bool:
    return after.started_at is not None and after.started_at != row.started_at


def _until(when: datetime | None, now: datetime) -> datetime:
    return now if when is None else min(when, now)


async def _priced(session: AsyncSession, meter: Any) -> Accrual:
    """The meter's count so far, at the price in force from here."""
    found = (await observe(session, [meter])).get((meter.workload_id, meter.basis))
    acc = accrual_of(meter)
    if found is not None and found.cents_per_hour is not None:
        acc = reprice(acc, found.cents_per_hour)
    return acc


async def _save(session: AsyncSession, meter: Any, acc: Accrual) -> None:
    await session.execute(
        update(orm.Meter).where(orm.Meter.pk == meter.pk).values(**stored(acc), next_run_at=None)
    )


async def _locked(session: AsyncSession, workload_id: str, basis: str) -> Any:
    return (
        await session.execute(
            select_meters(
                orm.Meter.workload_id == workload_id, orm.Meter.basis == basis
            ).with_for_update(of=orm.Meter)
        )
    ).one_or_none()
