"""The metering controller on both databases, driven pass by pass with a manual clock: exact
charges for known seconds at a known price, fractions carried, stop and restart, a crash in the
middle of a pass, two replicas at once, and no float anywhere near the ledger."""

from __future__ import annotations

import asyncio
import itertools
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from gpuyard.core.money import MICROCENTS_PER_CENT, SECONDS_PER_HOUR
from gpuyard.server import orm
from gpuyard.server.controllers.metering import MeteringController
from gpuyard.server.db import write_session
from gpuyard.server.services import ledger
from tests.harness import Api, Tenant
from tests.server.market import FakeHost, join_host
from tests.server.metered_fleet import add_org, add_running_instances

RTX = ("RTX 4090", 24564)
PRICE = 7  # cents per GPU-hour: 1,944.4… micro-cents a second, so every second leaves a fraction


def exact_microcents(seconds: int, cents_per_hour: int) -> int:
    return seconds * cents_per_hour * MICROCENTS_PER_CENT // SECONDS_PER_HOUR


def meter(api: Api, owner: str = "a", **kw: Any) -> MeteringController:
    return MeteringController(
        sessions=api.ctx.sessions, clock=api.clock, owner=owner, settle_seconds=60, **kw
    )


async def run_pass(m: MeteringController) -> int:
    total = 0
    while n := await m.step():
        total += n
    return total


async def rented(
    api: Api, gpus: int = 1, *, host_gpus: int | None = None, cents_per_gpu_hour: int = PRICE
) -> tuple[Tenant, FakeHost, dict[str, Any], str]:
    """An instance of ``gpus`` GPUs rented and assigned on a new host of ``host_gpus`` (as many
    as it rents, unless told); (tenant, host, the instance, its workload id)."""
    host = await join_host(api, [RTX] * (host_gpus or gpus))
    r = await api.client.put(
        "/v1/admin/prices/rtx-4090", json={"cents_per_gpu_hour": cents_per_gpu_hour}
    )
    assert r.status_code == 200, r.text
    t = await api.tenant()
    offers = (await t.client.get(f"/v1/orgs/{t.org_id}/offers")).json()["data"]
    offer = next(o for o in offers if o["num_gpus"] == gpus)
    r = await t.client.post(
        f"/v1/orgs/{t.org_id}/vms", json={"offer_id": offer["id"], "command": "sleep 600"}
    )
    assert r.status_code == 201, r.text
    [assigned] = (await host.beat())["workloads"]
    return t, host, r.json(), assigned["spec"]["id"]


async def start_running(api: Api, host: FakeHost, workload_id: str) -> datetime:
    started = api.clock.now()
    host.report(workload_id, "running", started_at=started.isoformat())
    await host.beat()
    return started


async def the_meter(api: Api, workload_id: str) -> orm.Meter:
    async with api.ctx.sessions() as s:
        row = await s.scalar(select(orm.Meter).where(orm.Meter.workload_id == workload_id))
        assert row is not None
        return row


async def usage_entries(api: Api, org_id: str) -> list[orm.LedgerEntry]:
    async with api.ctx.sessions() as s:
        rows = await s.scalars(
            select(orm.LedgerEntry)
            .where(orm.LedgerEntry.org_id == org_id, orm.LedgerEntry.kind == "usage")
            .order_by(orm.LedgerEntry.pk)
        )
        return list(rows)


async def test_known_seconds_at_a_known_price_charge_exactly(api: Api) -> None:
    t, host, vm, wid = await rented(api)
    m = meter(api)
    await start_running(api, host, wid)
    # Uneven steps with fractions of a second: the count is the whole seconds of the total.
    steps = [61.7, 333.3, 60.4, 1799.9, 3600.25, 67.45] * 6
    for dt in steps:
        api.clock.advance(seconds=dt)
        assert await run_pass(m) == 1
        api.clock.advance(seconds=0)
        assert await run_pass(m) == 0  # settled: not due again before its next time
    seconds = int(sum(steps))
    row = await the_meter(api, wid)
    assert row.total_seconds == seconds
    used = exact_microcents(seconds, PRICE)
    assert row.base_microcents + exact_microcents(row.seconds, row.cents_per_hour) == used
    charged = used // MICROCENTS_PER_CENT
    assert row.charged_cents == charged
    entries = await usage_entries(api, t.org_id)
    assert sum(e.amount_cents for e in entries) == -charged
    assert all(type(e.amount_cents) is int and e.amount_cents < 0 for e in entries)
    assert sum(e.gpu_seconds or 0 for e in entries) == row.ledgered_seconds
    assert {e.resource_id for e in entries} == {vm["id"]}
    assert all(e.cents_per_hour == PRICE for e in entries)
    assert [e.key for e in entries] == [f"usage:{wid}:{i}" for i in range(1, len(entries) + 1)]
    r = await t.client.get(f"/v1/orgs/{t.org_id}/billing")
    assert r.json()["balance_cents"] == -charged
    assert r.json()["burn_cents_per_hour"] == PRICE


async def test_each_charge_covers_the_period_after_the_last_from_the_reported_start(
    api: Api,
) -> None:
    t, host, _, wid = await rented(api)
    api.clock.advance(seconds=10)
    started = api.clock.now() - timedelta(seconds=5)  # the agent reports it a moment later
    host.report(wid, "running", started_at=started.isoformat())
    await host.beat()
    m = meter(api)
    for _ in range(3):
        api.clock.advance(seconds=3600)
        await run_pass(m)
    entries = await usage_entries(api, t.org_id)
    assert len(entries) == 3
    assert entries[0].period_start == started and entries[0].gpu_seconds == 3605
    for before, after in itertools.pairwise(entries):
        assert after.period_start == before.period_end


async def test_a_stop_charges_to_the_reported_end_and_a_restart_counts_again(api: Api) -> None:
    t, host, vm, wid = await rented(api, gpus=2)
    m = meter(api)
    started = await start_running(api, host, wid)
    api.clock.advance(seconds=100)
    await run_pass(m)
    # It stops at +1000 s; its host tells us at +1500 s; the meter counts to +1000 s only.
    host.report(
        wid, "stopped", started_at=started.isoformat(),
        finished_at=(started + timedelta(seconds=1000)).isoformat(),
    )  # fmt: skip
    api.clock.advance(seconds=1400)
    await host.beat()
    await run_pass(m)  # woken by the state change: due now
    row = await the_meter(api, wid)
    assert row.total_seconds == 1000 and row.running is False
    api.clock.advance(hours=5)  # stopped: nothing accrues
    await run_pass(m)
    assert (await the_meter(api, wid)).total_seconds == 1000
    # Started again: counts from its new start.
    r = await t.client.post(f"/v1/orgs/{t.org_id}/vms/{vm['id']}/start")
    assert r.status_code == 200, r.text
    await host.beat()
    restarted = await start_running(api, host, wid)
    api.clock.advance(seconds=250)
    await run_pass(m)
    row = await the_meter(api, wid)
    assert row.total_seconds == 1250
    assert row.accrued_until == restarted + timedelta(seconds=250)
    price = 2 * PRICE
    assert row.charged_cents == exact_microcents(1250, price) // MICROCENTS_PER_CENT
    entries = await usage_entries(api, t.org_id)
    assert sum(e.gpu_seconds or 0 for e in entries) == 2 * row.ledgered_seconds


class Crashing(MeteringController):
    """Dies after writing its charges, before the transaction commits (a kill -9 then)."""

    async def settle(self, session, meters, now):  # type: ignore[no-untyped-def]
        await super().settle(session, meters, now)
        raise RuntimeError("killed")


async def test_a_crash_mid_pass_leaves_nothing_missing_or_doubled(api: Api) -> None:
    now = api.clock.now()
    async with write_session(api.ctx.sessions) as s:
        org_id = await add_org(s, now=now)
        wids = await add_running_instances(
            s, org_id=org_id, count=2500, cents_per_hour=PRICE, started_at=now, now=now
        )
    ok = meter(api, "survivor")
    ok.batch_size = 1000  # type: ignore[misc]
    api.clock.advance(seconds=4000)
    crashing = Crashing(sessions=api.ctx.sessions, clock=api.clock, owner="doomed")
    with pytest.raises(RuntimeError):
        await crashing.step()
    assert await usage_entries(api, org_id) == []  # its transaction never committed
    assert await run_pass(ok) == 2500  # every meter once, past the first batch
    api.clock.advance(seconds=3000)
    with pytest.raises(RuntimeError):
        await Crashing(sessions=api.ctx.sessions, clock=api.clock, owner="doomed").step()
    assert await run_pass(ok) == 2500
    expected = exact_microcents(7000, PRICE) // MICROCENTS_PER_CENT
    async with api.ctx.sessions() as s:
        per_workload = dict(
            (
                await s.execute(
                    select(orm.Meter.workload_id, orm.Meter.charged_cents).where(
                        orm.Meter.org_id == org_id
                    )
                )
            ).all()
        )
        sums = dict(
            (
                await s.execute(
                    select(orm.LedgerEntry.key, orm.LedgerEntry.amount_cents).where(
                        orm.LedgerEntry.org_id == org_id
                    )
                )
            ).all()
        )
    assert set(per_workload) == set(wids)
    assert set(per_workload.values()) == {expected}
    assert sum(sums.values()) == -expected * len(wids)
    async with api.ctx.sessions() as s:
        assert await ledger.balance_cents(s, org_id=org_id) == -expected * len(wids)


async def test_two_replicas_at_once_charge_each_period_once(api: Api) -> None:
    now = api.clock.now()
    async with write_session(api.ctx.sessions) as s:
        org_id = await add_org(s, now=now)
        await add_running_instances(
            s, org_id=org_id, count=600, cents_per_hour=3600, started_at=now, now=now
        )
    a, b = meter(api, "a"), meter(api, "b")
    a.batch_size = b.batch_size = 100  # type: ignore[misc]
    for _ in range(5):
        api.clock.advance(seconds=61)
        claimed = await asyncio.gather(run_pass(a), run_pass(b))
        assert sum(claimed) == 600, claimed
    async with api.ctx.sessions() as s:
        entries = (
            await s.execute(
                select(func.count(), func.count(func.distinct(orm.LedgerEntry.key))).where(
                    orm.LedgerEntry.org_id == org_id
                )
            )
        ).one()
        periods = await s.scalar(
            select(func.sum(orm.Meter.period)).where(orm.Meter.org_id == org_id)
        )
        charged = await s.scalar(
            select(func.sum(orm.Meter.charged_cents)).where(orm.Meter.org_id == org_id)
        )
        assert await ledger.balance_cents(s, org_id=org_id) == -charged
    assert entries[0] == entries[1] == periods == 600 * 5  # one entry per (workload, period)
    assert charged == 600 * 305  # 305 s at one cent a second


async def test_a_float_never_reaches_the_ledger() -> None:
    for bad in (1.0, 0.5, True):
        with pytest.raises(TypeError):
            ledger.new_entry(
                org_id="org_x", key="k", kind="credit", amount_cents=bad, now=datetime.now()
            )
