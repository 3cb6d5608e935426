"""The OpenAI gateway routes a model to the org's serverless endpoint of that name, on both
databases: the real ``openai`` SDK's call is held while a real worker process
(``gpuyard worker serverless``) is placed from zero and becomes ready, then served by it with a
signed grant; a model no endpoint of the org has is 404 with nothing recorded; a worker that
does not become ready in time is 503 and the request stops being demand."""

from __future__ import annotations

import asyncio
from typing import Any

import openai
import pytest
from sqlalchemy import func, select

from gpuyard.server import orm
from tests.harness import Api
from tests.server.market import join_host
from tests.server.serverless_kit import RTX, autoscaler, make_endpoint, run_assigned, settle
from tests.server.test_serverless_worker import DEADLINE_S, free_port, until, worker_process

pytestmark = pytest.mark.slow


def sdk(api: Api, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{api.base_url}/v1", api_key=key, max_retries=0)


async def routed(api: Api) -> list[orm.RoutedRequest]:
    async with api.ctx.sessions() as s:
        return list(await s.scalars(select(orm.RoutedRequest).order_by(orm.RoutedRequest.pk)))


async def test_the_openai_sdk_reaches_a_worker_started_from_zero(api: Api) -> None:
    host = await join_host(api, [RTX])
    t = await api.tenant()
    ctl = autoscaler(api)
    ep = await make_endpoint(t, inactivity_timeout=60)
    client = sdk(api, t.key)
    call = asyncio.ensure_future(
        client.chat.completions.create(
            model="llm", messages=[{"role": "user", "content": "hello"}], max_tokens=4
        )
    )

    async def placed() -> dict[str, Any]:
        await settle(ctl)  # the held request is demand: a worker is placed from zero
        return await run_assigned(host)

    [spec] = (await until(placed)).values()
    await settle(ctl)
    async with worker_process(spec, free_port()):
        answer = await asyncio.wait_for(call, timeout=DEADLINE_S)
        assert answer.model == "llm" and len(answer.choices[0].message.content or "") == 64
        vectors = await client.embeddings.create(model="llm", input="text")
        assert len(vectors.data[0].embedding) == 8

        async def done() -> bool:  # the worker reported both requests done
            rows = await routed(api)
            return len(rows) == 2 and all(r.status == "done" for r in rows)

        await until(done)
    [row] = (await t.client.post("/get_endpoint_workers/", json={"id": ep["id"]})).json()
    assert row["id"] == int(spec["env"]["CONTAINER_ID"])
    await api.ctx.gateway.settle()
    await api.ctx.gateway.logs.flush()
    async with api.ctx.sessions() as s:
        endpoint_id = await s.scalar(select(orm.Endpoint.id).where(orm.Endpoint.name == "llm"))
        logged = list(await s.scalars(select(orm.RequestLog)))
    assert [(r.cluster_id, r.status, r.model) for r in logged] == [(endpoint_id, 200, "llm")] * 2


async def test_a_model_without_an_endpoint_of_the_org_is_404_and_records_nothing(
    api: Api,
) -> None:
    await join_host(api, [RTX])
    owner, other = await api.tenant("Owner"), await api.tenant("Other")
    await make_endpoint(owner)
    for model in ("llm", "nothing-by-that-name"):
        with pytest.raises(openai.NotFoundError) as caught:
            await sdk(api, other.key).chat.completions.create(
                model=model, messages=[{"role": "user", "content": "x"}]
            )
        assert caught.value.code == "model_not_found"
    assert await routed(api) == []


async def test_no_worker_in_time_is_503_and_the_request_stops_being_demand(api: Api) -> None:
    t = await api.tenant()  # no host: nothing can be placed
    await make_endpoint(t)
    waiter = api.ctx.gateway.serverless
    assert waiter is not None
    waiter.wait_s = 0.3
    with pytest.raises(openai.InternalServerError) as caught:
        await sdk(api, t.key).chat.completions.create(
            model="llm", messages=[{"role": "user", "content": "x"}]
        )
    assert caught.value.status_code == 503 and caught.value.code == "no_ready_worker"
    [row] = await routed(api)
    assert row.status == "abandoned" and row.done_at is not None
    async with api.ctx.sessions() as s:
        open_ = await s.scalar(
            select(func.count())
            .select_from(orm.RoutedRequest)
            .where(orm.RoutedRequest.done_at.is_(None))
        )
    assert open_ == 0


async def test_models_list_shows_the_orgs_endpoints_by_name(api: Api) -> None:
    owner, other = await api.tenant("Owner"), await api.tenant("Other")
    await make_endpoint(owner, "llm")
    await make_endpoint(owner, "embedder")
    mine = sdk(api, owner.key)
    listed = await mine.models.list()
    assert sorted(m.id for m in listed.data) == ["embedder", "llm"]
    assert (await mine.models.retrieve("llm")).id == "llm"
    assert [m.id for m in (await sdk(api, other.key).models.list()).data] == []
    with pytest.raises(openai.NotFoundError):
        await sdk(api, other.key).models.retrieve("llm")
    number = next(
        e["id"]
        for e in (await owner.client.get("/api/v0/endptjobs/")).json()["results"]
        if e["endpoint_name"] == "llm"
    )
    assert (await owner.client.delete(f"/api/v0/endptjobs/{number}/")).status_code == 200
    assert [m.id for m in (await mine.models.list()).data] == ["embedder"]
