"""Money out of reach, on both databases: low-balance and depleted events as charges land, the
enforcer stopping a depleted org's instances after the grace period (not before), a credit
restoring it, and a check-and-debit that lets concurrent debits take at most the balance."""

from __future__ import annotations

import asyncio

import openai
import pytest
from sqlalchemy import select

from gpuyard.core.money import BalancePolicy
from gpuyard.server import orm
from gpuyard.server.controllers.billing_enforcer import BillingEnforcer
from gpuyard.server.controllers.metering import MeteringController
from gpuyard.server.db import write_session
from gpuyard.server.services import balances, ledger
from tests.harness import Api
from tests.server.test_metering import rented, run_pass, start_running

POLICY = BalancePolicy(low_balance_cents=500, grace_seconds=600)


async def event_types(api: Api, org_id: str) -> list[str]:
    async with api.ctx.sessions() as s:
        rows = await s.scalars(
            select(orm.Event.type)
            .where(orm.Event.org_id == org_id, orm.Event.type.like("billing.%"))
            .order_by(orm.Event.pk)
        )
        return list(rows)


async def test_a_depleted_org_is_stopped_after_the_grace_and_restored_by_a_credit(
    api: Api,
) -> None:
    t, host, vm, wid = await rented(api)
    r = await api.client.put("/v1/admin/prices/rtx-4090", json={"cents_per_gpu_hour": 3600})
    assert r.status_code == 200  # the instance keeps the price it was rented at: 7 c/h
    async with write_session(api.ctx.sessions) as s:
        await s.execute(
            orm.Instance.__table__.update()
            .where(orm.Instance.__table__.c.id == vm["id"])
            .values(cents_per_hour=3600)  # a cent a second, to spend quickly
        )
    r = await api.client.post(
        f"/v1/admin/orgs/{t.org_id}/credits",
        json={"amount_cents": 1000},
        headers={"Idempotency-Key": "first"},
    )
    assert r.status_code == 201
    meter = MeteringController(
        sessions=api.ctx.sessions, clock=api.clock, owner="m", settle_seconds=60, policy=POLICY
    )
    enforcer = BillingEnforcer(sessions=api.ctx.sessions, clock=api.clock, owner="e")
    await start_running(api, host, wid)
    api.clock.advance(seconds=400)
    await run_pass(meter)
    assert await event_types(api, t.org_id) == ["billing.credited"]
    api.clock.advance(seconds=200)  # 600 s: 400 left, under 500
    await run_pass(meter)
    assert await event_types(api, t.org_id) == ["billing.credited", "billing.low_balance"]
    api.clock.advance(seconds=450)  # 1,050 s: -50
    await run_pass(meter)
    assert (await event_types(api, t.org_id))[-1] == "billing.depleted"
    api.clock.advance(seconds=300)  # within the grace: nothing is stopped
    await run_pass(meter)
    assert await enforcer.step() == 0
    url = f"/v1/orgs/{t.org_id}/vms/{vm['id']}"
    assert (await t.client.get(url)).json()["intended_status"] == "running"
    api.clock.advance(seconds=301)
    assert await enforcer.step() == 1
    assert (await t.client.get(url)).json()["intended_status"] == "stopped"
    assert (await event_types(api, t.org_id))[-1] == "billing.enforced"
    assert await enforcer.step() == 0  # once
    async with api.ctx.sessions() as s:
        assert await balances.balance_of(s, org_id=t.org_id) == await ledger.balance_cents(
            s, org_id=t.org_id
        )
    r = await api.client.post(
        f"/v1/admin/orgs/{t.org_id}/credits",
        json={"amount_cents": 5000},
        headers={"Idempotency-Key": "top-up"},
    )
    assert r.status_code == 201
    assert (await event_types(api, t.org_id))[-2:] == ["billing.restored", "billing.credited"]
    assert (await t.client.post(f"{url}/start")).json()["intended_status"] == "running"
    assert await enforcer.step() == 0


async def test_the_operator_org_is_never_stopped(api: Api) -> None:
    async with write_session(api.ctx.sessions) as s:
        entry = ledger.new_entry_values(
            org_id=api.operator_org, key="usage:x:1", kind="usage", amount_cents=-5,
            now=api.clock.now(),
        )  # fmt: skip
        await balances.post(s, clock=api.clock, entries=[entry], policy=POLICY)
    api.clock.advance(seconds=601)
    enforcer = BillingEnforcer(sessions=api.ctx.sessions, clock=api.clock, owner="e")
    assert await enforcer.step() == 1
    assert "billing.enforced" not in await event_types(api, api.operator_org)


async def test_concurrent_debits_never_take_more_than_the_balance(api: Api) -> None:
    t = await api.tenant()
    r = await api.client.post(
        f"/v1/admin/orgs/{t.org_id}/credits",
        json={"amount_cents": 100},
        headers={"Idempotency-Key": "c"},
    )
    assert r.status_code == 201

    async def debit(i: int) -> bool:
        async with write_session(api.ctx.sessions) as s:
            entry = ledger.new_entry_values(
                org_id=t.org_id, key=f"debit:{i}", kind="usage", amount_cents=-10,
                now=api.clock.now(),
            )  # fmt: skip
            return await balances.debit_if_covered(s, clock=api.clock, entry=entry, policy=POLICY)

    results = await asyncio.gather(*(debit(i) for i in range(50)))
    assert sum(results) == 10
    async with api.ctx.sessions() as s:
        assert await balances.balance_of(s, org_id=t.org_id) == 0
        assert await ledger.balance_cents(s, org_id=t.org_id) == 0
    assert (await event_types(api, t.org_id)).count("billing.depleted") == 1


async def test_an_org_credited_less_than_the_threshold_is_warned_at_its_first_debit(
    api: Api,
) -> None:
    t = await api.tenant()
    r = await api.client.post(
        f"/v1/admin/orgs/{t.org_id}/credits",
        json={"amount_cents": 100},  # never above the 500-cent threshold
        headers={"Idempotency-Key": "small"},
    )
    assert r.status_code == 201

    async def debit(key: str, cents: int) -> None:
        async with write_session(api.ctx.sessions) as s:
            entry = ledger.new_entry_values(
                org_id=t.org_id, key=key, kind="usage", amount_cents=-cents, now=api.clock.now()
            )
            await balances.post(s, clock=api.clock, entries=[entry], policy=POLICY)

    assert await event_types(api, t.org_id) == ["billing.credited"]  # a credit warns of nothing
    await debit("d1", 10)
    await debit("d2", 10)
    assert await event_types(api, t.org_id) == ["billing.credited", "billing.low_balance"]


async def test_inference_is_refused_once_spending_is_stopped(api: Api) -> None:
    t = await api.tenant("Spender", scopes=["org:write", "inference"])
    client = openai.AsyncOpenAI(api_key=t.key, base_url=f"{api.base_url}/v1", max_retries=0)

    async def ask() -> openai.APIStatusError:
        with pytest.raises(openai.APIStatusError) as caught:
            await client.chat.completions.create(
                model="nothing-here", messages=[{"role": "user", "content": "hi"}]
            )
        return caught.value

    assert (await ask()).status_code == 404  # no such model: billing lets it through
    async with write_session(api.ctx.sessions) as s:
        entry = ledger.new_entry_values(
            org_id=t.org_id, key="usage:y:1", kind="usage", amount_cents=-1, now=api.clock.now()
        )
        await balances.post(s, clock=api.clock, entries=[entry], policy=POLICY)
    api.clock.advance(seconds=601)
    assert await BillingEnforcer(sessions=api.ctx.sessions, clock=api.clock, owner="e").step()
    api.ctx.gateway.auth.forget()  # as another replica would see it within a second
    refused = await ask()
    assert isinstance(refused, openai.RateLimitError)
    assert refused.code == "insufficient_quota"
    assert refused.body["type"] == "insufficient_quota"  # type: ignore[index]
    r = await api.client.post(
        f"/v1/admin/orgs/{t.org_id}/credits",
        json={"amount_cents": 100},
        headers={"Idempotency-Key": "again"},
    )
    assert r.status_code == 201
    assert (await ask()).status_code == 404  # let through again at once
    await client.close()
