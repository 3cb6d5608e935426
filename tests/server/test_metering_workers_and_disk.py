"""Metering of serverless workers (the price of the GPUs they hold) and of the disk kept by
stopped instances and cold workers (cents per GB-month), on both databases, pass by pass with a
manual clock: exact charges, the price in force on each entry, and nothing charged for a disk
once it runs again or for an instance that stopped by itself."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from gpuyard.core.ids import new_id
from gpuyard.core.money import MICROCENTS_PER_CENT, SECONDS_PER_MONTH
from gpuyard.core.workload import WorkloadKind, WorkloadSpec
from gpuyard.server import orm
from gpuyard.server.controllers.metering import DEFAULT_DISK_GB
from gpuyard.server.db import write_session
from gpuyard.server.services import price_book, workloads
from tests.harness import Api
from tests.server.market import join_host
from tests.server.test_metering import (
    PRICE,
    RTX,
    exact_microcents,
    meter,
    rented,
    run_pass,
    start_running,
    usage_entries,
)

DISK_PRICE = 13  # cents per GB-month: a fraction of a micro-cent every second on small disks
A100 = ("A100 SXM4 80GB", 81920)


def disk_microcents(seconds: int, gb: int, cents_per_gb_month: int) -> int:
    return seconds * gb * cents_per_gb_month * MICROCENTS_PER_CENT // SECONDS_PER_MONTH


async def set_storage_price(api: Api, cents: int) -> None:
    async with write_session(api.ctx.sessions) as s:
        await price_book.set_storage(s, clock=api.clock, cents=cents)


async def test_a_stopped_instance_pays_for_its_disk_until_it_runs_again(api: Api) -> None:
    await set_storage_price(api, DISK_PRICE)
    host = await join_host(api, [RTX])
    r = await api.client.put("/v1/admin/prices/rtx-4090", json={"cents_per_gpu_hour": PRICE})
    assert r.status_code == 200, r.text
    t = await api.tenant()
    [offer] = (await t.client.get(f"/v1/orgs/{t.org_id}/offers")).json()["data"]
    r = await t.client.post(
        f"/v1/orgs/{t.org_id}/vms",
        json={"offer_id": offer["id"], "command": "sleep 600", "disk_gb": 49.5},
    )
    assert r.status_code == 201, r.text
    vm = r.json()
    [assigned] = (await host.beat())["workloads"]
    wid = assigned["spec"]["id"]
    m = meter(api)
    started = await start_running(api, host, wid)
    api.clock.advance(seconds=600)
    await run_pass(m)
    r = await t.client.post(f"/v1/orgs/{t.org_id}/vms/{vm['id']}/stop")
    assert r.status_code == 200, r.text
    stopped = started + timedelta(seconds=700)
    api.clock.advance(seconds=100)
    host.report(wid, "stopped", started_at=started.isoformat(), finished_at=stopped.isoformat())
    await host.beat()
    await run_pass(m)  # opens the disk's meter: it counts from the reported stop
    # Stopped for a day and a bit, settled in uneven steps.
    for dt in [3600.5, 86399.7, 61.3, 7200.1]:
        api.clock.advance(seconds=dt)
        await run_pass(m)
    disk_seconds = int((api.clock.now() - stopped).total_seconds())
    entries = await usage_entries(api, t.org_id)
    disk = [e for e in entries if e.resource_kind == "instance_disk"]
    gpu = [e for e in entries if e.resource_kind == "instance"]
    assert disk and all(e.resource_id == vm["id"] for e in disk)
    assert all(e.disk_gb == 50 and e.cents_per_gb_month == DISK_PRICE for e in disk)
    assert all(e.gpu_seconds is None and e.cents_per_hour is None for e in disk)
    assert [e.key for e in disk] == [f"storage:{wid}:{i}" for i in range(1, len(disk) + 1)]
    expected = disk_microcents(disk_seconds, 50, DISK_PRICE) // MICROCENTS_PER_CENT
    assert -sum(e.amount_cents for e in disk) == expected
    assert -sum(e.amount_cents for e in gpu) == exact_microcents(700, PRICE) // MICROCENTS_PER_CENT
    # Running again: its disk is no longer charged apart from its compute.
    r = await t.client.post(f"/v1/orgs/{t.org_id}/vms/{vm['id']}/start")
    assert r.status_code == 200, r.text
    await host.beat()
    restarted = await start_running(api, host, wid)
    api.clock.advance(hours=300)
    await run_pass(m)
    async with api.ctx.sessions() as s:
        store = await s.scalar(
            select(orm.Meter).where(orm.Meter.workload_id == wid, orm.Meter.basis == "storage")
        )
    assert store is not None and store.running is False
    until_restart = int((restarted - stopped).total_seconds())
    assert store.total_seconds == until_restart
    after = [e for e in await usage_entries(api, t.org_id) if e.resource_kind == "instance_disk"]
    assert -sum(e.amount_cents for e in after) == (
        disk_microcents(until_restart, 50, DISK_PRICE) // MICROCENTS_PER_CENT
    )
    r = await t.client.get(f"/v1/orgs/{t.org_id}/billing/ledger", params={"limit": 100})
    wire = [e for e in r.json()["data"] if e["resource_kind"] == "instance_disk"]
    assert wire and all(e["disk_gb"] == 50 and e["cents_per_gb_month"] == DISK_PRICE for e in wire)


async def test_an_instance_that_stopped_by_itself_is_not_charged_for_disk(api: Api) -> None:
    t, host, _vm, wid = await rented(api)
    m = meter(api)
    started = await start_running(api, host, wid)
    await run_pass(m)
    host.report(
        wid, "exited", started_at=started.isoformat(),
        finished_at=(started + timedelta(seconds=30)).isoformat(),
    )  # fmt: skip
    api.clock.advance(seconds=60)
    await host.beat()
    api.clock.advance(hours=48)
    await run_pass(m)
    assert await usage_entries(api, t.org_id) == []  # 30 s at 7 cents an hour: under a cent
    async with api.ctx.sessions() as s:
        meters = list(await s.scalars(select(orm.Meter).where(orm.Meter.workload_id == wid)))
    # Its desired state is running: not a kept disk, so no storage meter.
    assert [(row.basis, row.total_seconds) for row in meters] == [("compute", 30)]


async def add_worker(api: Api, host_id: str, org_id: str, gpu_indices: list[int]) -> str:
    """A serverless worker's workload on ``host_id`` holding those GPUs, as the autoscaler's
    placement writes it."""
    endpoint_id = new_id("ep")
    spec = WorkloadSpec(
        id=new_id("wl"), kind=WorkloadKind.WORKER, command="serve", gpu_indices=gpu_indices
    )
    async with write_session(api.ctx.sessions) as s:
        s.add(
            workloads.new_workload(
                spec=spec,
                org_id=org_id,
                host_id=host_id,
                owner_id=endpoint_id,
                desired="running",
                now=api.clock.now(),
            )
        )
        await s.execute(
            update(orm.Gpu)
            .where(orm.Gpu.host_id == host_id, orm.Gpu.index.in_(gpu_indices))
            .values(workload_id=spec.id)
        )
    return spec.id


async def test_a_worker_pays_for_the_gpus_it_holds_and_its_disk_while_cold(api: Api) -> None:
    await set_storage_price(api, DISK_PRICE)
    host = await join_host(api, [A100, A100, RTX])
    for slug, cents in (("a100-sxm4-80gb", 120), ("rtx-4090", PRICE)):
        r = await api.client.put(f"/v1/admin/prices/{slug}", json={"cents_per_gpu_hour": cents})
        assert r.status_code == 200, r.text
    t = await api.tenant()
    wid = await add_worker(api, host.host_id, t.org_id, [0, 1])
    await host.beat()
    m = meter(api)
    started = await start_running(api, host, wid)
    for dt in [59.9, 3600.3, 1000.4]:
        api.clock.advance(seconds=dt)
        await run_pass(m)
    ran = int((api.clock.now() - started).total_seconds())
    entries = await usage_entries(api, t.org_id)
    assert entries and all(e.resource_kind == "worker" for e in entries)
    assert all(e.cents_per_hour == 240 for e in entries)  # two A100s at 120
    assert -sum(e.amount_cents for e in entries) == (
        exact_microcents(ran, 240) // MICROCENTS_PER_CENT
    )
    assert sum(e.gpu_seconds or 0 for e in entries) == 2 * ran
    # Cold: the autoscaler stops it (desired stopped) and its host reports it stopped.
    async with write_session(api.ctx.sessions) as s:
        await s.execute(
            update(orm.Workload).where(orm.Workload.id == wid).values(desired="stopped")
        )
    stopped = api.clock.now()
    host.report(wid, "stopped", started_at=started.isoformat(), finished_at=stopped.isoformat())
    await host.beat()
    api.clock.advance(hours=30)
    await run_pass(m)
    cold = [e for e in await usage_entries(api, t.org_id) if e.resource_kind == "worker_disk"]
    assert cold and all(e.disk_gb == DEFAULT_DISK_GB for e in cold)
    assert -sum(e.amount_cents for e in cold) == (
        disk_microcents(30 * 3600, DEFAULT_DISK_GB, DISK_PRICE) // MICROCENTS_PER_CENT
    )
    compute = [e for e in await usage_entries(api, t.org_id) if e.resource_kind == "worker"]
    assert -sum(e.amount_cents for e in compute) == (
        exact_microcents(ran, 240) // MICROCENTS_PER_CENT
    )  # nothing more for its GPUs while cold


async def test_a_disk_is_counted_at_every_change_between_two_visits(api: Api) -> None:
    """Stopped, started, stopped again and destroyed, all between two passes: the disk is charged
    for the two stopped spells exactly, to the reported times, and not while it ran or after."""
    price = 10_000  # cents per GB-month: whole cents for an hour and a bit
    await set_storage_price(api, price)
    t, host, vm, wid = await rented(api)
    m = meter(api)
    started = await start_running(api, host, wid)
    await run_pass(m)
    vm_url = f"/v1/orgs/{t.org_id}/vms/{vm['id']}"

    async def report(state: str, began: float, ended: float | None) -> None:
        times = {"started_at": (started + timedelta(seconds=began)).isoformat()}
        if ended is not None:
            times["finished_at"] = (started + timedelta(seconds=ended)).isoformat()
        host.report(wid, state, **times)
        await host.beat()

    assert (await t.client.post(f"{vm_url}/stop")).status_code == 200
    api.clock.advance(seconds=130)
    await report("stopped", 0, 100)  # kept from +100 s
    api.clock.advance(seconds=1000)
    assert (await t.client.post(f"{vm_url}/start")).status_code == 200
    await report("running", 600, None)  # in use again from +600 s
    api.clock.advance(seconds=700)
    assert (await t.client.post(f"{vm_url}/stop")).status_code == 200
    await report("stopped", 600, 1700)  # kept from +1,700 s
    api.clock.advance(seconds=3000)
    assert (await t.client.delete(vm_url)).status_code in (200, 202, 204)
    host.forget(wid)
    await host.beat()  # gone at +4,830 s: the disk is no longer kept
    gone = int((api.clock.now() - started).total_seconds())
    api.clock.advance(hours=30)
    await run_pass(m)

    async with api.ctx.sessions() as s:
        store = await s.scalar(
            select(orm.Meter).where(orm.Meter.workload_id == wid, orm.Meter.basis == "storage")
        )
    assert store is not None and store.closed_at is not None and not store.running
    kept = (600 - 100) + (gone - 1700)
    assert store.total_seconds == kept
    disk = [e for e in await usage_entries(api, t.org_id) if e.resource_kind == "instance_disk"]
    gb = store.disk_gb
    assert gb is not None
    assert -sum(e.amount_cents for e in disk) == (
        disk_microcents(kept, gb, price) // MICROCENTS_PER_CENT
    )
    assert -sum(e.amount_cents for e in disk) == store.charged_cents > 0
