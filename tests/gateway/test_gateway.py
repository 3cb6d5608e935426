"""The inference gateway end to end: a cluster whose replica is a fake model server, driven by
the official ``openai`` SDK against the real gpuyard API on loopback."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

import openai
import pytest
from sqlalchemy import select

from gpuyard.server import orm
from gpuyard.server.controllers.clusters import ClusterController
from tests.gateway.kit import RTX, dead_port, deploy, serve
from tests.gateway.upstream import fake_model_server
from tests.harness import Api, serve_app
from tests.server.market import join_host


async def test_openai_sdk_against_a_cluster(api: Api, upstream_port: int) -> None:
    async with AsyncExitStack() as stack:
        d = await deploy(api, stack, [upstream_port])
        cluster = (await d.tenant.client.get(f"/v1/clusters/{d.cluster_id}")).json()
        assert cluster["status"] == "healthy" and cluster["models"] == ["tiny"]

        chat = await d.sdk.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "hi"}]
        )
        assert chat.choices[0].message.content == "Hello from the fake model"
        assert chat.usage is not None and chat.usage.completion_tokens == 5

        chunks = [
            c
            async for c in await d.sdk.chat.completions.create(
                model="tiny", messages=[{"role": "user", "content": "hi"}], stream=True
            )
        ]
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == "Hello from the fake model"
        assert all(c.usage is None for c in chunks)  # not asked for: not passed on

        asked = [
            c
            async for c in await d.sdk.chat.completions.create(
                model="tiny",
                messages=[{"role": "user", "content": "hi"}],
                stream=True,
                stream_options={"include_usage": True},
            )
        ]
        assert asked[-1].usage is not None and asked[-1].usage.total_tokens == 12

        emb = await d.sdk.embeddings.create(model="tiny", input=["abc", "hello"])  # base64 default
        assert [e.embedding for e in emb.data] == [[3.0, 1.0, 0.5], [5.0, 1.0, 0.5]]
        floats = await d.sdk.embeddings.create(model="tiny", input="abcd", encoding_format="float")
        assert floats.data[0].embedding == [4.0, 1.0, 0.5]

        speech = await d.sdk.audio.speech.create(model="tiny", input="hello", voice="alloy")
        assert (await speech.aread()).startswith(b"RIFF")

        models = await d.sdk.models.list()
        assert [m.id for m in models.data] == ["tiny"]
        assert (await d.sdk.models.retrieve("tiny")).id == "tiny"

        with pytest.raises(openai.NotFoundError):
            await d.sdk.chat.completions.create(
                model="nope", messages=[{"role": "user", "content": "x"}]
            )
        with pytest.raises(openai.BadRequestError):
            await d.sdk.chat.completions.create(model="tiny", messages=[])

        await api.ctx.gateway.settle()
        await api.ctx.gateway.logs.flush()
        async with api.ctx.sessions() as s:
            logs = (await s.scalars(select(orm.RequestLog).order_by(orm.RequestLog.pk))).all()
        assert [(r.endpoint, r.status) for r in logs][:3] == [
            ("chat/completions", 200),
            ("chat/completions", 200),
            ("chat/completions", 200),
        ]
        assert logs[0].completion_tokens == 5 and logs[1].completion_tokens == 5
        assert all(r.org_id == d.tenant.org_id for r in logs)


async def test_a_cluster_reported_healthy_is_routed_at_once(api: Api, upstream_port: int) -> None:
    """The directory's snapshot may be older than the cluster's health: a miss looks again."""
    host = await join_host(api, [RTX])
    t = await api.tenant()
    ctl = ClusterController(sessions=api.ctx.sessions, clock=api.clock, owner="t")
    body = {"name": "web", "gpu_type": "rtx-4090", "replicas": 1, "container": "x"}
    cluster = (await t.client.post("/v1/clusters", json=body)).json()
    ask = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}
    early = await t.client.post("/v1/chat/completions", json=ask)
    assert early.status_code == 404 and early.json()["error"]["code"] == "model_not_found"
    slug_url = cluster["endpoint"].split("/endpoints/", 1)[1]
    assert (await t.client.get(f"/endpoints/{slug_url}/v1/models")).status_code == 503

    await ctl.step()
    [a] = (await host.beat())["workloads"]
    host.report(a["spec"]["id"], "running", host_port=upstream_port)
    await host.beat()
    await ctl.step()
    got = (await t.client.get(f"/v1/clusters/{cluster['id']}")).json()
    assert got["status"] == "healthy"

    chat = await t.client.post("/v1/chat/completions", json=ask)  # no wait, no retry
    assert chat.status_code == 200, chat.text
    assert (await t.client.get(f"/endpoints/{slug_url}/v1/models")).status_code == 200


async def test_other_orgs_and_scopes(api: Api, upstream_port: int) -> None:
    async with AsyncExitStack() as stack:
        d = await deploy(api, stack, [upstream_port])
        other = await api.tenant("Other")
        sdk = openai.AsyncOpenAI(base_url=f"{api.base_url}/v1", api_key=other.key, max_retries=0)
        stack.push_async_callback(sdk.close)
        with pytest.raises(openai.NotFoundError):
            await sdk.chat.completions.create(
                model="tiny", messages=[{"role": "user", "content": "x"}]
            )
        assert (await sdk.models.list()).data == []
        ro = await api.tenant("RO", scopes=["org:read"])
        ro_sdk = openai.AsyncOpenAI(base_url=f"{api.base_url}/v1", api_key=ro.key, max_retries=0)
        stack.push_async_callback(ro_sdk.close)
        with pytest.raises(openai.PermissionDeniedError):
            await ro_sdk.models.list()
        bad = openai.AsyncOpenAI(
            base_url=f"{api.base_url}/v1", api_key="vl_" + "x" * 43, max_retries=0
        )
        stack.push_async_callback(bad.close)
        with pytest.raises(openai.AuthenticationError):
            await bad.models.list()
        del d


async def test_a_dead_replica_is_skipped_and_all_dead_is_503(api: Api, upstream_port: int) -> None:
    async with AsyncExitStack() as stack:
        d = await deploy(api, stack, [upstream_port, dead_port()])
        for _ in range(6):
            chat = await d.sdk.chat.completions.create(
                model="tiny", messages=[{"role": "user", "content": "x"}]
            )
            assert chat.choices[0].message.content
    async with AsyncExitStack() as stack:
        async with serve_app(fake_model_server()) as url:
            d = await deploy(api, stack, [int(url.rsplit(":", 1)[1])], name="gone")
        # the only replica was healthy and then died: 503 with Retry-After, in the OpenAI shape
        r = await d.tenant.client.post(
            "/v1/chat/completions",
            json={"model": "tiny", "messages": [{"role": "user", "content": "x"}]},
        )
        assert r.status_code == 503
        assert r.headers["retry-after"] == "5"
        assert r.json()["error"]["code"] == "no_replica_reachable"


async def test_upstream_dying_mid_stream_ends_with_an_error_event(api: Api) -> None:
    async with AsyncExitStack() as stack, serve_app(fake_model_server(die_mid_stream=True)) as url:
        d = await deploy(api, stack, [int(url.rsplit(":", 1)[1])])
        async with d.tenant.client.stream(
            "POST",
            "/v1/chat/completions",
            json={"model": "tiny", "stream": True, "messages": [{"role": "user", "content": "x"}]},
        ) as r:
            assert r.status_code == 200
            body = b"".join([c async for c in r.aiter_bytes()])
        assert b'"content": "Hello"' in body
        assert b"upstream_error" in body
        assert body.rstrip().endswith(b"data: [DONE]")


async def test_a_replica_gets_the_clients_headers_but_not_its_key(api: Api) -> None:
    async with AsyncExitStack() as stack:
        upstream = fake_model_server()
        d = await deploy(api, stack, [await serve(stack, upstream)])
        r = await d.tenant.client.post(
            "/v1/chat/completions",
            content=b'{"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}',
            headers={"content-type": "text/plain", "x-trace": "abc", "connection": "keep-alive"},
        )
        assert r.status_code == 200
        (head,) = upstream.state.heads
        names = [k for k, _ in head]
        assert names.count(b"content-type") == 1 and (b"content-type", b"application/json") in head
        assert (b"x-trace", b"abc") in head and b"authorization" not in names
        assert dict(head)[b"content-length"] == str(len(r.request.content)).encode()


async def test_a_stream_is_answered_first_and_accounted_after(api: Api, upstream_port: int) -> None:
    gw = api.ctx.gateway
    gw.after_answer = 3600.0  # what follows an answer waits until the test settles it
    async with AsyncExitStack() as stack:
        d = await deploy(api, stack, [upstream_port])
        chunks = [
            c
            async for c in await d.sdk.chat.completions.create(
                model="tiny", messages=[{"role": "user", "content": "hi"}], stream=True
            )
        ]
        assert "".join(c.choices[0].delta.content or "" for c in chunks) == (
            "Hello from the fake model"
        )
        await gw.logs.flush()
        async with api.ctx.sessions() as s:
            assert (await s.scalars(select(orm.RequestLog))).all() == []  # not yet
        assert gw.balancer.busy() == 1  # the replica is released with the rest
        await gw.settle()
        await gw.logs.flush()
        async with api.ctx.sessions() as s:
            (row,) = (await s.scalars(select(orm.RequestLog))).all()
        assert (row.status, row.stream, row.prompt_tokens, row.completion_tokens) == (
            200,
            True,
            7,
            5,
        )
        assert gw.balancer.busy() == 0


async def test_the_work_after_answers_runs_in_order_and_survives_a_failure(api: Api) -> None:
    gw = api.ctx.gateway
    gw.after_answer = 3600.0
    done: list[str] = []

    async def work(name: str) -> None:
        if name == "bad":
            raise RuntimeError("a broken stream")
        done.append(name)

    for name in ("a", "bad", "b"):
        gw.later(work(name))
    await asyncio.sleep(0)
    assert done == []
    await gw.settle()
    assert done == ["a", "b"]
    gw.later(work("c"))
    await gw.stop()  # shutdown runs what is left
    assert done == ["a", "b", "c"]
