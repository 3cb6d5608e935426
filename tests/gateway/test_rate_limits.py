"""Per-key requests and tokens per minute, holding across server replicas on one database."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path

import openai
import pytest

from tests.gateway.kit import deploy
from tests.harness import Api, start_api

CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}


async def limited_key(api: Api, org_id: str, **limits: int) -> str:
    r = await api.client.post(
        f"/v1/admin/orgs/{org_id}/api-keys", json={"scopes": ["inference"], **limits}
    )
    assert r.status_code == 201, r.text
    assert all(r.json()[k] == v for k, v in limits.items())
    return str(r.json()["key"])


async def test_requests_per_minute(api: Api, upstream_port: int) -> None:
    async with AsyncExitStack() as stack:
        d = await deploy(api, stack, [upstream_port])
        key = await limited_key(api, d.tenant.org_id, rpm_limit=3)
        sdk = openai.AsyncOpenAI(base_url=f"{api.base_url}/v1", api_key=key, max_retries=0)
        stack.push_async_callback(sdk.close)
        for _ in range(3):
            await sdk.chat.completions.create(**CHAT)
        with pytest.raises(openai.RateLimitError) as caught:
            await sdk.chat.completions.create(**CHAT)
        assert caught.value.response.headers["retry-after"] == "60"
        assert caught.value.code == "rate_limit_requests"
        api.clock.advance(minutes=1)
        await sdk.chat.completions.create(**CHAT)  # a new minute


async def test_tokens_per_minute(api: Api, upstream_port: int) -> None:
    async with AsyncExitStack() as stack:
        d = await deploy(api, stack, [upstream_port])
        key = await limited_key(api, d.tenant.org_id, tpm_limit=20)  # each call uses 12
        sdk = openai.AsyncOpenAI(base_url=f"{api.base_url}/v1", api_key=key, max_retries=0)
        stack.push_async_callback(sdk.close)
        await sdk.chat.completions.create(**CHAT)
        await api.ctx.gateway.settle()
        await sdk.chat.completions.create(**CHAT)
        await api.ctx.gateway.settle()
        with pytest.raises(openai.RateLimitError) as caught:
            await sdk.chat.completions.create(**CHAT)
        assert caught.value.code == "rate_limit_tokens"


async def test_limits_hold_across_replicas(
    api: Api,
    db_url: str,
    db_kind: str,
    tmp_path: Path,
    upstream_port: int,
) -> None:
    if db_kind != "postgres":
        pytest.skip("several server replicas share a database only on Postgres")
    async with AsyncExitStack() as stack:
        d = await deploy(api, stack, [upstream_port])
        key = await limited_key(api, d.tenant.org_id, rpm_limit=4)
        second = await stack.enter_async_context(start_api(db_url, tmp_path / "replica2"))
        second.clock.set(api.clock.now())
        clients = []
        for base in (api.base_url, second.base_url):
            sdk = openai.AsyncOpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0)
            stack.push_async_callback(sdk.close)
            clients.append(sdk)
        ok = limited = 0
        for i in range(8):
            try:
                await clients[i % 2].chat.completions.create(**CHAT)
                ok += 1
            except openai.RateLimitError:
                limited += 1
        assert (ok, limited) == (4, 4)
