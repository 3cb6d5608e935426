"""Bulk writes (server/bulk_rows.py) and the UTC time column's kept conversions, on both
databases: every row written with its own values (times, nulls, big integers), an update that
touches only the rows it names, and a naive time refused even once its aware twin was converted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.exc import StatementError

from gpuyard.core.clock import ManualClock
from gpuyard.server import bulk_rows, orm
from gpuyard.server.db import write_session
from tests.harness import Api
from tests.server.metered_fleet import add_org, add_running_instances

METERS = orm.Meter.metadata.tables[orm.Meter.__tablename__]
ROWS = 1200  # more than one metering batch


async def test_bulk_insert_and_update_write_each_row_its_own_values(api: Api) -> None:
    clock = ManualClock()
    now = clock.now()
    async with write_session(api.ctx.sessions) as s:
        org_id = await add_org(s, now=now)
        wids = await add_running_instances(
            s, org_id=org_id, count=ROWS, cents_per_hour=10, started_at=now, now=now
        )
        rows = [
            {
                "workload_id": wid,
                "org_id": org_id,
                "resource_kind": "instance",
                "resource_id": f"vm-{i}",
                "num_gpus": 1 + i % 3,
                "cents_per_hour": i,
                "seconds": 0,
                "base_microcents": 2**40 + i,  # past 32 bits
                "total_seconds": 0,
                "ledgered_seconds": 0,
                "charged_cents": 0,
                "period": 0,
                "running": i % 2 == 0,
                "accrued_until": now + timedelta(seconds=i % 7),
                "settled_at": None if i % 5 else now,
                "created_at": now,
            }
            for i, wid in enumerate(wids)
        ]
        await bulk_rows.insert_rows(s, METERS, rows)
    async with api.ctx.sessions() as s:
        stored = (await s.scalars(select(orm.Meter).order_by(orm.Meter.pk))).all()
    assert len(stored) == ROWS
    by_workload = {m.workload_id: m for m in stored}
    for i, wid in enumerate(wids):
        m = by_workload[wid]
        assert (m.resource_id, m.num_gpus, m.cents_per_hour) == (f"vm-{i}", 1 + i % 3, i)
        assert m.base_microcents == 2**40 + i and m.running is (i % 2 == 0)
        assert m.accrued_until == now + timedelta(seconds=i % 7)
        assert m.settled_at == (None if i % 5 else now)

    # Update every other row by its key: each its own values; the rest untouched.
    later = now + timedelta(hours=1)
    changes = [
        {"pk": m.pk, "seconds": m.pk * 3, "settled_at": later if m.pk % 4 else None}
        for m in stored[::2]
    ]
    async with write_session(api.ctx.sessions) as s:
        await bulk_rows.update_rows(s, METERS, changes)
    async with api.ctx.sessions() as s:
        after = {m.pk: m for m in (await s.scalars(select(orm.Meter))).all()}
    changed = {c["pk"]: c for c in changes}
    for pk, m in after.items():
        if pk in changed:
            assert (m.seconds, m.settled_at) == (pk * 3, changed[pk]["settled_at"])
        else:
            before = next(b for b in stored if b.pk == pk)
            assert (m.seconds, m.settled_at) == (0, before.settled_at)


async def test_a_naive_time_is_refused_even_after_its_aware_twin_was_written(api: Api) -> None:
    when = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    async with write_session(api.ctx.sessions) as s:
        org_id = await add_org(s, now=when)  # converts (and keeps) the aware time
    async with write_session(api.ctx.sessions) as s:
        with pytest.raises(StatementError, match="naive datetime"):
            await add_org(s, now=when.replace(tzinfo=None), name="Naive")
    async with api.ctx.sessions() as s:
        org = await s.scalar(select(orm.Org).where(orm.Org.id == org_id))
    assert org is not None and org.created_at == when
