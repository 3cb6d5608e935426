"""Runs the metering controller never saw: a workload that starts and ends between two passes,
one reported started and ended at once, two runs between passes, one destroyed between passes,
and hosts reporting while two controllers pass at once. Every second a workload ran is charged,
once (both databases, the clock injected)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import select

from gpuyard.core.money import MICROCENTS_PER_CENT
from gpuyard.server import orm
from tests.harness import Api
from tests.server.market import FakeHost, join_host
from tests.server.test_metering import (
    RTX,
    exact_microcents,
    meter,
    rented,
    run_pass,
    the_meter,
    usage_entries,
)

PRICE = 7  # cents per GPU-hour (the price ``rented`` sets): a fraction every second


def at(api: Api, seconds: float) -> str:
    return (api.clock.now() + timedelta(seconds=seconds)).isoformat()


async def charged_exactly(api: Api, org_id: str, wid: str, seconds: int) -> orm.Meter:
    row = await the_meter(api, wid)
    assert row.total_seconds == seconds
    assert row.charged_cents == exact_microcents(seconds, PRICE) // MICROCENTS_PER_CENT
    entries = [e for e in await usage_entries(api, org_id) if e.key.startswith(f"usage:{wid}:")]
    assert sum(e.amount_cents for e in entries) == -row.charged_cents
    assert sum(e.gpu_seconds or 0 for e in entries) == row.ledgered_seconds <= seconds
    return row


async def test_a_run_between_two_passes_is_charged(api: Api) -> None:
    t, host, _, wid = await rented(api)
    m = meter(api)
    await run_pass(m)  # pending: no meter yet
    api.clock.advance(seconds=10)
    started = api.clock.now()
    host.report(wid, "running", started_at=started.isoformat())
    await host.beat()
    api.clock.advance(seconds=5000.4)
    host.report(wid, "exited", started_at=started.isoformat(), finished_at=at(api, -0.4))
    await host.beat()
    api.clock.advance(seconds=3000)  # the next pass, long after
    await run_pass(m)
    row = await charged_exactly(api, t.org_id, wid, 5000)
    assert row.running is False
    api.clock.advance(hours=2)
    await run_pass(m)
    await charged_exactly(api, t.org_id, wid, 5000)  # stopped: nothing more


async def test_a_run_reported_started_and_ended_at_once_is_charged(api: Api) -> None:
    t, host, _, wid = await rented(api)
    m = meter(api)
    api.clock.advance(seconds=100)
    # A short job: the host's first report says it started at +20 s and exited at +95 s.
    host.report(wid, "exited", started_at=at(api, -80), finished_at=at(api, -5), exit_code=0)
    await host.beat()
    api.clock.advance(seconds=60)
    await run_pass(m)
    await charged_exactly(api, t.org_id, wid, 75)


async def test_two_runs_between_passes_are_both_charged(api: Api) -> None:
    t, host, _, wid = await rented(api)
    m = meter(api)
    host.report(wid, "running", started_at=at(api, 0))
    await host.beat()
    api.clock.advance(seconds=30)
    await run_pass(m)  # counted 30 s
    first = (await the_meter(api, wid)).accrued_until
    host.report(wid, "stopped", started_at=first.isoformat(), finished_at=at(api, 10))
    api.clock.advance(seconds=12)
    await host.beat()  # ran 40 s
    again = at(api, 3)
    api.clock.advance(seconds=20)
    host.report(wid, "running", started_at=again)
    await host.beat()
    api.clock.advance(seconds=100)
    host.report(wid, "stopped", started_at=again, finished_at=at(api, -2))
    await host.beat()  # ran 115 s more
    api.clock.advance(seconds=50)
    await run_pass(m)
    await charged_exactly(api, t.org_id, wid, 155)


async def test_a_workload_destroyed_between_passes_is_charged_until_its_host_says_gone(
    api: Api,
) -> None:
    t, host, vm, wid = await rented(api)
    m = meter(api)
    host.report(wid, "running", started_at=at(api, 0))
    await host.beat()
    api.clock.advance(seconds=60)
    await run_pass(m)
    api.clock.advance(seconds=20)
    r = await t.client.delete(f"/v1/orgs/{t.org_id}/vms/{vm['id']}")
    assert r.status_code in (200, 202, 204), r.text
    api.clock.advance(seconds=7)
    host.forget(wid)
    await host.beat()  # gone: deleted, its meter counted to now
    async with api.ctx.sessions() as s:
        assert await s.scalar(select(orm.Workload.pk).where(orm.Workload.id == wid)) is None
    api.clock.advance(seconds=600)
    await run_pass(m)
    row = await charged_exactly(api, t.org_id, wid, 87)
    assert row.closed_at is not None


async def test_hosts_reporting_while_two_controllers_pass_charge_every_second_once(
    api: Api,
) -> None:
    r = await api.client.put("/v1/admin/prices/rtx-4090", json={"cents_per_gpu_hour": PRICE})
    assert r.status_code == 200, r.text
    t = await api.tenant()
    hosts: list[FakeHost] = [await join_host(api, [RTX], name=f"box-{i}") for i in range(4)]
    wids: list[tuple[FakeHost, str]] = []
    for host in hosts:
        offers = (await t.client.get(f"/v1/orgs/{t.org_id}/offers")).json()["data"]
        offer = next(o for o in offers if o["host_id"] == host.host_id)
        r = await t.client.post(
            f"/v1/orgs/{t.org_id}/vms", json={"offer_id": offer["id"], "command": "sleep 1"}
        )
        assert r.status_code == 201, r.text
        [assigned] = (await host.beat())["workloads"]
        wids.append((host, assigned["spec"]["id"]))
    a, b = meter(api, "a"), meter(api, "b")
    ran = {wid: 0 for _, wid in wids}
    since: dict[str, str] = {}
    for step in range(24):
        seconds = 7 + step % 5
        api.clock.advance(seconds=seconds)
        for wid in since:  # ran all this step
            ran[wid] += seconds
        for i, (host, wid) in enumerate(wids):
            if (step + i) % 3 == 0:  # each flips every third step, told on its host's beat
                if wid in since:
                    host.report(wid, "stopped", started_at=since.pop(wid), finished_at=at(api, 0))
                else:
                    since[wid] = at(api, 0)
                    host.report(wid, "running", started_at=since[wid])
        passes = [run_pass(a), run_pass(b)] if step % 4 == 0 else []
        await asyncio.gather(*passes, *(h.beat() for h in hosts))
    api.clock.advance(seconds=0)
    for host, wid in wids:  # all stopped at the end
        if wid in since:
            host.report(wid, "stopped", started_at=since.pop(wid), finished_at=at(api, 0))
        await host.beat()
    api.clock.advance(seconds=120)
    await asyncio.gather(run_pass(a), run_pass(b))
    await run_pass(a)
    for _, wid in wids:
        assert ran[wid] > 0
        await charged_exactly(api, t.org_id, wid, ran[wid])
