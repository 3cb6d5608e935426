"""Holds that outlive their server, and text to speech charged by the character, on both
databases: a hold left by a server that died before settling is settled from the request's log
(or released when there is none) by the hold sweeper of a server started later, once; a late
settlement never doubles it; and speech is held and charged exactly by its input's characters."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

import openai
from sqlalchemy import func, select

from gpuyard.core.money import MICROCENTS_PER_CENT
from gpuyard.server import orm
from gpuyard.server.controllers.token_holds import TokenHoldSweeper
from gpuyard.server.db import write_session
from gpuyard.server.services import token_charges
from tests.gateway.kit import deploy, request_logs
from tests.gateway.test_token_charges import (
    COMPLETION,
    PROMPT,
    balance,
    credit,
    price_model,
    token_entries,
)
from tests.harness import Api


def sweeper(api: Api, owner: str = "restarted") -> TokenHoldSweeper:
    return TokenHoldSweeper(
        sessions=api.ctx.sessions,
        clock=api.clock,
        owner=owner,
        policy=api.ctx.settings.balance_policy(),
    )


async def open_holds(api: Api) -> int:
    async with api.ctx.sessions() as s:
        return int(await s.scalar(select(func.count()).select_from(orm.TokenHold)) or 0)


async def test_a_hold_whose_server_died_is_settled_from_its_log_once(
    api: Api, upstream_port: int
) -> None:
    hold_s = api.ctx.settings.balance_policy().hold_seconds
    async with AsyncExitStack() as stack:
        d = await deploy(api, stack, [upstream_port])
        await price_model(api, 30_001, 70_003)
        await credit(api, d.tenant.org_id, 10_000)
        spend = api.ctx.gateway.spend

        async def dies_first(*args: object, **kw: object) -> None:
            return None  # the server was killed before the settlement ran

        spend.settle = dies_first  # type: ignore[method-assign]
        await d.sdk.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=50
        )
        [logged] = [r for r in await request_logs(api) if r.endpoint == "chat/completions"]
        [held] = await token_entries(api, d.tenant.org_id)
        assert held.key == f"tokens:{logged.id}:hold" and held.amount_cents < 0
        assert await balance(d.tenant) == 10_000 + held.amount_cents
        assert await open_holds(api) == 1
        api.clock.advance(seconds=hold_s - 1)
        assert await sweeper(api).step() == 0  # not yet: the request may still be running
        api.clock.advance(seconds=1)
        assert await sweeper(api).step() == 1
        assert await sweeper(api).step() == 0
        used = (PROMPT * 30_001 + COMPLETION * 70_003) // MICROCENTS_PER_CENT
        assert await balance(d.tenant) == 10_000 - used
        entries = await token_entries(api, d.tenant.org_id)
        assert [e.key for e in entries] == [held.key, f"tokens:{logged.id}"]
        assert (entries[1].input_tokens, entries[1].output_tokens) == (PROMPT, COMPLETION)
        assert await open_holds(api) == 0
        # The settlement of that request, late after all: nothing more.
        async with write_session(api.ctx.sessions) as s:
            late = await token_charges.settle(
                s, clock=api.clock, policy=api.ctx.settings.balance_policy(),
                org_id=d.tenant.org_id, request_id=logged.id, model="tiny",
                held_cents=-held.amount_cents, input_tokens=PROMPT, output_tokens=COMPLETION,
            )  # fmt: skip
        assert late is None
        assert await balance(d.tenant) == 10_000 - used


async def test_unlogged_holds_are_released_and_late_settlements_charge_once(api: Api) -> None:
    t = await api.tenant()
    await price_model(api, 1_000_000, 1_000_000)  # a cent a token
    await credit(api, t.org_id, 10_000)
    policy = api.ctx.settings.balance_policy()
    n = 24
    for i in range(n):
        async with write_session(api.ctx.sessions) as s:
            await token_charges.hold(
                s, clock=api.clock, policy=policy, org_id=t.org_id, request_id=f"req_{i}",
                model="tiny", body_bytes=10, max_tokens=10,
            )  # fmt: skip
    assert await balance(t) == 10_000 - n * 16
    api.clock.advance(seconds=policy.hold_seconds)

    async def settle(i: int) -> None:
        async with write_session(api.ctx.sessions) as s:
            await token_charges.settle(
                s, clock=api.clock, policy=policy, org_id=t.org_id, request_id=f"req_{i}",
                model="tiny", held_cents=16, input_tokens=2, output_tokens=i % 3,
            )  # fmt: skip

    async def sweep_all(owner: str) -> None:
        s = sweeper(api, owner)
        s.batch_size = 5  # type: ignore[misc]
        while await s.step():
            pass

    # Half the requests' settlements come late, racing two sweepers; the rest never come.
    await asyncio.gather(sweep_all("a"), sweep_all("b"), *(settle(i) for i in range(0, n, 2)))
    assert await open_holds(api) == 0
    for i in range(0, n, 2):  # once more: nothing
        await settle(i)
    used = sum(2 + i % 3 for i in range(0, n, 2))
    assert await balance(t) == 10_000 - used
    entries = await token_entries(api, t.org_id)
    keys = [e.key for e in entries]
    assert len(keys) == len(set(keys))
    for i in range(n):
        mine = sorted(k for k in keys if k.split(":")[1] == f"req_{i}")
        if i % 2:  # never settled: held, then released
            assert mine == [f"tokens:req_{i}:hold", f"tokens:req_{i}:released"]
        else:  # settled, before or after a release
            assert f"tokens:req_{i}" in mine and f"tokens:req_{i}:hold" in mine


async def test_speech_is_held_and_charged_by_the_character(api: Api, upstream_port: int) -> None:
    async with AsyncExitStack() as stack:
        d = await deploy(api, stack, [upstream_port])
        r = await api.client.put(
            "/v1/admin/model-prices",
            json={
                "model": "tiny",
                "cents_per_million_input": 0,
                "cents_per_million_output": 0,
                "cents_per_million_characters": 1_500_000,  # 1.5 cents a character
            },
        )
        assert r.status_code == 200, r.text
        assert r.json()["cents_per_million_characters"] == 1_500_000
        await credit(api, d.tenant.org_id, 100)
        texts = ["hello", "a longer sentence to say", "bye"]
        for text in texts:
            speech = await d.sdk.audio.speech.create(model="tiny", input=text, voice="alloy")
            assert (await speech.aread()).startswith(b"RIFF")
        await api.ctx.gateway.settle()
        spoken = sum(len(t) for t in texts)
        cost = spoken * 1_500_000 // MICROCENTS_PER_CENT  # fractions carried between requests
        assert await balance(d.tenant) == 100 - cost
        settled = [e for e in await token_entries(api, d.tenant.org_id) if e.key.count(":") == 1]
        assert sorted(e.characters for e in settled) == sorted(len(t) for t in texts)  # same time
        assert all(e.cents_per_million_characters == 1_500_000 for e in settled)
        r = await d.tenant.client.get(f"/v1/orgs/{d.tenant.org_id}/usage")
        [line] = [u for u in r.json()["data"] if u["model"] == "tiny"]
        assert (line["characters"], line["cost_cents"]) == (spoken, cost)
        assert await open_holds(api) == 0
        # What the balance left does not cover is refused before it is spoken.
        with_less = 100 - cost
        too_long = "x" * (with_less * 2 // 3 + 1)
        try:
            await d.sdk.audio.speech.create(model="tiny", input=too_long, voice="alloy")
            raise AssertionError("spoken without the balance to pay for it")
        except openai.RateLimitError as exc:
            assert exc.code == "insufficient_quota"
        assert await balance(d.tenant) == with_less
