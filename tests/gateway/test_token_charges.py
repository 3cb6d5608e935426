"""Inference charged by the token through the HTTP gateway, with a real model server on loopback,
on both databases: the hold taken before a request goes upstream never lets concurrent requests
spend more than the balance, streamed and whole answers are charged from their usage, fractions
of a cent carry from request to request, and a request is settled once."""

from __future__ import annotations

import asyncio
import uuid
from contextlib import AsyncExitStack

import openai
import pytest
from sqlalchemy import select

from gpuyard.core.money import MICROCENTS_PER_CENT
from gpuyard.server import orm
from gpuyard.server.db import write_session
from gpuyard.server.services import token_charges
from tests.gateway.kit import deploy
from tests.harness import Api, Tenant

# The fake model server answers 7 prompt and 5 completion tokens.
PROMPT, COMPLETION = 7, 5


async def price_model(api: Api, input_cents: int, output_cents: int) -> None:
    r = await api.client.put(
        "/v1/admin/model-prices",
        json={
            "model": "tiny",
            "cents_per_million_input": input_cents,
            "cents_per_million_output": output_cents,
        },
    )
    assert r.status_code == 200, r.text


async def credit(api: Api, org_id: str, cents: int) -> None:
    r = await api.client.post(
        f"/v1/admin/orgs/{org_id}/credits",
        json={"amount_cents": cents},
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )
    assert r.status_code == 201, r.text


async def token_entries(api: Api, org_id: str) -> list[orm.LedgerEntry]:
    await api.ctx.gateway.settle()
    async with api.ctx.sessions() as s:
        rows = await s.scalars(
            select(orm.LedgerEntry)
            .where(orm.LedgerEntry.org_id == org_id, orm.LedgerEntry.kind == "tokens")
            .order_by(orm.LedgerEntry.pk)
        )
        return list(rows)


async def balance(t: Tenant) -> int:
    r = await t.client.get(f"/v1/orgs/{t.org_id}/billing")
    assert r.status_code == 200, r.text
    return int(r.json()["balance_cents"])


async def test_fifty_concurrent_requests_on_a_balance_covering_ten(
    api: Api, upstream_port: int
) -> None:
    async with AsyncExitStack() as stack:
        d = await deploy(api, stack, [upstream_port])
        # Output only, and max_tokens is what it uses: each request holds and costs 2 cents.
        await price_model(api, 0, 400_000)
        await credit(api, d.tenant.org_id, 20)

        async def ask() -> str:
            try:
                await d.sdk.chat.completions.create(
                    model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=5
                )
            except openai.RateLimitError as exc:
                assert exc.code == "insufficient_quota", exc
                return "refused"
            return "served"

        outcomes = await asyncio.gather(*(ask() for _ in range(50)))
        assert outcomes.count("served") == 10, outcomes
        assert outcomes.count("refused") == 40
        entries = await token_entries(api, d.tenant.org_id)
        holds = [e for e in entries if e.key.endswith(":hold")]
        settled = [e for e in entries if not e.key.endswith(":hold")]
        assert len(holds) == len(settled) == 10  # nothing held for a refused request
        assert all(e.amount_cents == -2 for e in holds)
        assert all(e.amount_cents == 0 for e in settled)  # used just what it held
        assert all(
            (e.input_tokens, e.output_tokens, e.model) == (PROMPT, COMPLETION, "tiny")
            for e in settled
        )
        assert all(e.cents_per_million_output == 400_000 for e in entries)
        assert await balance(d.tenant) == 0
        # A credit lets requests through again.
        await credit(api, d.tenant.org_id, 2)
        await d.sdk.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=5
        )
        await api.ctx.gateway.settle()
        assert await balance(d.tenant) == 0


@pytest.mark.parametrize("stream", [False, True])
async def test_usage_is_charged_exactly_with_fractions_carried(
    api: Api, upstream_port: int, stream: bool
) -> None:
    async with AsyncExitStack() as stack:
        d = await deploy(api, stack, [upstream_port])
        # 7 * 30,001 + 5 * 70,003 = 560,022 micro-cents a request: a fraction of a cent each.
        await price_model(api, 30_001, 70_003)
        await credit(api, d.tenant.org_id, 10_000)
        n = 13
        for _ in range(n):
            if stream:
                chunks = await d.sdk.chat.completions.create(
                    model="tiny", messages=[{"role": "user", "content": "hi"}], stream=True
                )
                async for _chunk in chunks:
                    pass
            else:
                await d.sdk.chat.completions.create(
                    model="tiny", messages=[{"role": "user", "content": "hi"}]
                )
        await api.ctx.gateway.settle()
        per_request = PROMPT * 30_001 + COMPLETION * 70_003
        expected = n * per_request // MICROCENTS_PER_CENT
        assert await balance(d.tenant) == 10_000 - expected
        entries = await token_entries(api, d.tenant.org_id)
        assert len(entries) == 2 * n
        assert -sum(e.amount_cents for e in entries) == expected
        r = await d.tenant.client.get(f"/v1/orgs/{d.tenant.org_id}/usage")
        [line] = [u for u in r.json()["data"] if u["model"] == "tiny"]
        assert (line["input_tokens"], line["output_tokens"]) == (n * PROMPT, n * COMPLETION)
        assert line["cost_cents"] == expected
        r = await d.tenant.client.get(
            f"/v1/orgs/{d.tenant.org_id}/billing/ledger", params={"kind": "tokens", "limit": 100}
        )
        assert r.status_code == 200 and len(r.json()["data"]) == 2 * n


async def test_a_request_is_settled_once(api: Api) -> None:
    t = await api.tenant()
    await price_model(api, 1_000_000, 1_000_000)
    await credit(api, t.org_id, 100)
    policy = api.ctx.settings.balance_policy()
    async with write_session(api.ctx.sessions) as s:
        held = await token_charges.hold(
            s, clock=api.clock, policy=policy, org_id=t.org_id, request_id="req_once",
            model="tiny", body_bytes=10, max_tokens=10,
        )  # fmt: skip
    assert held == 16  # (10 // 2 + 1) input + 10 output tokens at a cent each
    for attempt in range(3):
        async with write_session(api.ctx.sessions) as s:
            due = await token_charges.settle(
                s, clock=api.clock, policy=policy, org_id=t.org_id, request_id="req_once",
                model="tiny", held_cents=held, input_tokens=3, output_tokens=4,
            )  # fmt: skip
        assert due == (7 if attempt == 0 else None)
    assert await balance(t) == 93


async def test_bad_model_prices_are_refused(api: Api) -> None:
    for body in (
        {"model": "tiny", "cents_per_million_input": -1, "cents_per_million_output": 1},
        {"model": "tiny", "cents_per_million_input": 1.5, "cents_per_million_output": 1},
        {"model": "", "cents_per_million_input": 1, "cents_per_million_output": 1},
        {"model": "tiny", "cents_per_million_input": 1},
    ):
        r = await api.client.put("/v1/admin/model-prices", json=body)
        assert r.status_code in (400, 422), r.text
    assert (await api.client.get("/v1/admin/model-prices")).json() == []
    t = await api.tenant()
    r = await t.client.put(
        "/v1/admin/model-prices",
        json={"model": "tiny", "cents_per_million_input": 1, "cents_per_million_output": 1},
    )
    assert r.status_code == 403
    r = await api.client.delete("/v1/admin/model-prices/org/unknown-model")
    assert r.status_code == 404


async def test_vultr_usage_shows_this_month_and_the_last(api: Api, upstream_port: int) -> None:
    async with AsyncExitStack() as stack:
        d = await deploy(api, stack, [upstream_port])
        await price_model(api, 100_000, 300_000)  # 2.2 cents a request
        # Without max_tokens a request holds 4,096 output tokens' worth (about 12.3 dollars).
        await credit(api, d.tenant.org_id, 5000)
        for _ in range(5):
            await d.sdk.chat.completions.create(
                model="tiny", messages=[{"role": "user", "content": "hi"}]
            )
        await api.ctx.gateway.settle()
        caller = api.client_for(d.tenant.key)
        r = await caller.get("/v1/usage")
        assert r.status_code == 200, r.text
        now = api.clock.now()
        this = r.json()["current_month"]
        assert this["month"] == now.strftime("%Y-%m")
        assert (this["input_tokens"], this["output_tokens"]) == (5 * PROMPT, 5 * COMPLETION)
        assert this["total_tokens"] == 5 * (PROMPT + COMPLETION)
        assert this["cost_cents"] == 11  # 5 x 2.2 cents, fractions carried
        assert [m["model"] for m in this["models"]] == ["tiny"]
        assert r.json()["previous_month"]["total_tokens"] == 0
        # A month later, it is last month's.
        api.clock.advance(days=32 - now.day + 1)
        r = await caller.get("/v1/usage")
        assert r.json()["current_month"]["total_tokens"] == 0
        assert r.json()["previous_month"]["cost_cents"] == 11
        assert r.json()["previous_month"]["month"] == now.strftime("%Y-%m")
        assert (await api.client_for(None).get("/v1/usage")).status_code == 401
