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

import asyncio
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession

from gpuyard.core.metering import Accrual, Observed, accrue, reprice
from gpuyard.core.money import BalancePolicy
from gpuyard.server import bulk_rows, orm
from gpuyard.server.controllers.base import Reconciler
from gpuyard.server.db import write_session
from gpuyard.server.services import balances, ledger, meters
from gpuyard.server.services.meters import DEFAULT_SETTLE_SECONDS, STORAGE

__all__ = ["DEFAULT_DISK_GB", "MeteringController"]
DEFAULT_DISK_GB = meters.DEFAULT_DISK_GB


class MeteringController(Reconciler[orm.Meter, int, None]):
    name = "metering"
    model = orm.Meter
    batch_size = 1000
    lanes = 2  # batches settled at once on Postgres

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
        self._lanes: int | None = None  # known at the first step

    def due(self) -> ColumnElement[bool]:
        return orm.Meter.closed_at.is_(None)

    def snapshot(self, row: orm.Meter) -> int:
        return row.pk

    async def apply(self, session: AsyncSession, row: orm.Meter, item: int, result: None) -> None:
        found = await session.execute(meters.select_meters(orm.Meter.pk == row.pk))
        await self.settle(session, list(found.all()), self.clock.now())

    async def step(self) -> int:
        """Open meters for newly running workloads (once per pass), then claim batches of due
        meters and settle each in one transaction; the number of meters settled. On Postgres
        ``lanes`` batches are settled at once (the server writes one while this process counts
        the next); SQLite has one writer, so one."""
        now = self.clock.now()
        if not self._mid_pass:
            async with write_session(self.sessions) as session:
                await meters.open_meters(session, now)
                await meters.open_storage_meters(session, now)
                if self._lanes is None:
                    postgres = session.get_bind().dialect.name == "postgresql"
                    self._lanes = self.lanes if postgres else 1
        done = await asyncio.gather(
            *(self._settle_batch(now) for _ in range(self._lanes or 1)), return_exceptions=True
        )
        for outcome in done:  # every lane has ended (committed or rolled back): say the first error
            if isinstance(outcome, BaseException):
                raise outcome
        counts = [n for n in done if isinstance(n, int)]
        settled = sum(counts)
        self._mid_pass = max(counts) >= self.batch_size
        if self.metrics is not None and settled:
            self.metrics.controller_runs.labels(self.name, "applied").inc(settled)
        return settled

    async def _settle_batch(self, now: datetime) -> int:
        async with write_session(self.sessions) as session:
            # The batch's meters are chosen and locked first, then read with their workloads by
            # a statement of their own: on Postgres a statement reads what was committed when it
            # began, and a report (meter_changes.follow) may commit a meter's new count between
            # then and the lock; read in the locking statement, the batch would count over it.
            pks = list(
                await session.scalars(
                    select(orm.Meter.pk)
                    .where(*self._ready(now))
                    .order_by(orm.Meter.next_run_at.asc().nulls_first(), orm.Meter.pk)
                    .limit(self.batch_size)
                    .with_for_update(skip_locked=True)
                )
            )
            if not pks:
                return 0
            found = await session.execute(meters.select_meters(orm.Meter.pk.in_(pks)))
            batch = list(found.all())
            if batch:
                await self.settle(session, batch, now)
        return len(batch)

    async def settle(self, session: AsyncSession, batch: list[Any], now: datetime) -> None:
        """Count, charge and reschedule ``batch`` (rows of ``meters.select_meters``, locked by
        the caller): one bulk update of the meters and one bulk insert of the ledger entries."""
        seen = await meters.observe(session, batch)
        next_run = self._after(self.revisit or DEFAULT_SETTLE_SECONDS)
        gone = meters.Seen(Observed(billable=False, gone=True), None)
        updates: list[dict[str, Any]] = []
        entries: list[dict[str, Any]] = []
        for meter in batch:
            found = seen.get((meter.workload_id, meter.basis), gone)
            acc = meters.accrual_of(meter)
            if found.cents_per_hour is not None:
                acc = reprice(acc, found.cents_per_hour)
            acc = accrue(acc, found.observed, now)
            change = meters.stored(acc)
            due = acc.due_cents(meter.charged_cents)
            if due:
                entry, charged = _charge(meter, acc, due, now)
                entries.append(entry)
                change.update(charged)
            else:  # every row sets the same columns: one statement for the batch
                change.update(
                    period=meter.period,
                    charged_cents=meter.charged_cents,
                    ledgered_seconds=meter.ledgered_seconds,
                    settled_at=meter.settled_at,
                )
            change["pk"] = meter.pk
            change["next_run_at"] = next_run
            change["closed_at"] = now if found.observed.gone and not acc.running else None
            updates.append(change)
        await bulk_rows.update_rows(session, _METERS, updates)
        # Last: the org's account row stays locked (a batch settling beside this one waits for
        # it) only from here to the commit.
        await balances.post(session, clock=self.clock, entries=entries, policy=self.policy)


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
        period_start=meter.settled_at or _counted_from(meter),
        period_end=acc.accrued_until,
        machine_id=meter.machine_id,
        **price,
    )
    charged = {
        "period": period,
        "charged_cents": meter.charged_cents + cents,
        "ledgered_seconds": acc.total_seconds,
        "settled_at": acc.accrued_until,
    }
    return entry, charged


def _counted_from(meter: Any) -> datetime:
    """Where a meter's first period starts: when it opened, or, for compute, the workload's
    reported start if that came first (a run is counted from its start, never from before the
    workload was made, and an agent reports it a moment later)."""
    if meter.basis == STORAGE or meter.wl_started_at is None:
        return meter.created_at  # type: ignore[no-any-return]
    began = max(meter.wl_started_at, meter.wl_created_at)
    return min(meter.created_at, began)  # type: ignore[no-any-return]


_METERS = orm.Meter.metadata.tables[orm.Meter.__tablename__]
