"""Chat completions kept per org: ``GET /v1/chat/completions/{id}`` for whole and streamed
answers (through the ``openai`` SDK), rating up or down, tenancy, and retention, on SQLite and
Postgres."""

from __future__ import annotations

from contextlib import AsyncExitStack

from sqlalchemy import func, select

from gpuyard.server import orm
from gpuyard.server.controllers.retention import RetentionSweeper
from tests.gateway.kit import deploy, openai_error, serve
from tests.gateway.upstream import fake_model_server
from tests.harness import Api

ASK = [{"role": "user", "content": "hi"}]
TEXT = "Hello from the fake model"


async def kept(api: Api) -> None:
    """Once the answers' completions are queued and written (batched, as request logs)."""
    await api.ctx.gateway.settle()
    assert api.ctx.gateway.kept is not None
    await api.ctx.gateway.kept.flush()


async def kept_count(api: Api) -> int:
    await kept(api)
    async with api.ctx.sessions() as s:
        return int(await s.scalar(select(func.count()).select_from(orm.StoredCompletion)) or 0)


async def test_whole_and_streamed_completions_are_kept_and_rated(api: Api) -> None:
    async with AsyncExitStack() as stack:
        d = await deploy(api, stack, [await serve(stack, fake_model_server())])
        c = d.tenant.client
        whole = await d.sdk.chat.completions.create(model="tiny", messages=ASK)
        assert await kept_count(api) == 1
        r = await c.get(f"/v1/chat/completions/{whole.id}")
        assert r.status_code == 200, r.text
        got = r.json()
        assert got["choices"][0]["message"]["content"] == TEXT
        assert got["usage"]["completion_tokens"] == 5 and got["vote"] is None

        stream = await d.sdk.chat.completions.create(model="tiny", messages=ASK, stream=True)
        chunks = [chunk async for chunk in stream]
        assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == TEXT
        assert await kept_count(api) == 2
        streamed = (await c.get(f"/v1/chat/completions/{chunks[0].id}")).json()
        assert streamed["object"] == "chat.completion"
        assert streamed["choices"] == [
            {"index": 0, "message": {"role": "assistant", "content": TEXT}, "finish_reason": "stop"}
        ]

        r = await c.post(f"/v1/chat/completions/{whole.id}/rating", json={"vote": "up"})
        assert r.status_code == 200 and r.json() == {"id": whole.id, "vote": "up"}
        r = await c.post(f"/v1/chat/completions/{whole.id}/rating", json={"vote": "down"})
        assert (await c.get(f"/v1/chat/completions/{whole.id}")).json()["vote"] == "down"
        for bad in ({"vote": "sideways"}, {"vote": 1}, {}, {"vote": "up", "x": 1}):
            r = await c.post(f"/v1/chat/completions/{whole.id}/rating", json=bad)
            assert r.status_code in (400, 422), (bad, r.text)
            assert set(r.json()["error"]) == {"message", "type", "param", "code"}
        assert (await c.get(f"/v1/chat/completions/{whole.id}")).json()["vote"] == "down"

        other = (await api.tenant("Other")).client
        openai_error(
            await other.get(f"/v1/chat/completions/{whole.id}"), 404, "completion_not_found"
        )
        openai_error(
            await other.post(f"/v1/chat/completions/{whole.id}/rating", json={"vote": "up"}),
            404,
            "completion_not_found",
        )
        openai_error(await c.get("/v1/chat/completions/nope"), 404, "completion_not_found")
        openai_error(await c.get("/v1/chat/completions/" + "x" * 300), 404, "completion_not_found")

        # Retention: gone once older than GPUYARD_COMPLETION_RETENTION_DAYS.
        sweeper = RetentionSweeper(
            sessions=api.ctx.sessions, clock=api.clock, poll_seconds=60, completion_retention_days=1
        )
        await sweeper.step()
        assert await kept_count(api) == 2
        api.clock.advance(86_401)
        await sweeper.step()
        assert await kept_count(api) == 0
        openai_error(await c.get(f"/v1/chat/completions/{whole.id}"), 404, "completion_not_found")


async def test_a_refused_request_keeps_nothing(api: Api) -> None:
    async with AsyncExitStack() as stack:
        server = fake_model_server()
        d = await deploy(api, stack, [await serve(stack, server)])
        r = await d.tenant.client.post(
            "/v1/chat/completions", json={"model": "tiny", "messages": ASK, "temperature": 9}
        )
        assert r.status_code == 400
        assert await kept_count(api) == 0
