"""A serverless worker that refuses a request (429: its queue is full) is passed over for
another ready worker with room; the 429 reaches the caller only when no worker has room.

Two workers placed by the autoscaler (driven step by step), each a small model server on
loopback that reports to ``/worker_status/`` as Vast's worker library does; the openai SDK calls
through the real gateway.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

import openai
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select

from gpuyard.server import orm
from tests.gateway.kit import request_logs, serve
from tests.harness import Api
from tests.server.market import join_host
from tests.server.serverless_kit import (
    RTX,
    autoscaler,
    make_endpoint,
    report,
    run_assigned,
    settle,
)


def worker_app() -> FastAPI:
    """A worker that answers chat completions, or 429 while ``app.state.full``."""
    app = FastAPI()
    app.state.full = False
    app.state.seen = []

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> JSONResponse:
        body = await request.json()
        app.state.seen.append(body["auth_data"]["request_idx"])
        if app.state.full:
            return JSONResponse({"error": "queue full"}, status_code=429)
        answer = {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1,
            "model": body["payload"]["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "served"},
                    "finish_reason": "stop",
                }
            ],
        }
        return JSONResponse(answer)

    return app


async def two_workers(api: Api, stack: AsyncExitStack) -> tuple[Any, list[FastAPI], list[int]]:
    """An endpoint with two ready workers, the first one routed to first; its tenant, the
    workers' apps and their numbers."""
    host = await join_host(api, [RTX, RTX])
    t = await api.tenant()
    ctl = autoscaler(api)
    # Two workers of perf 100 cover a minimum load of 150.
    await make_endpoint(t, min_load=150.0, target_util=1.0, max_workers=2)
    apps, numbers = [], []
    for _ in range(2):  # one at a time until the first has measured its perf
        await settle(ctl)
        placed = await run_assigned(host)
        [spec] = [s for s in placed.values() if int(s["env"]["CONTAINER_ID"]) not in numbers]
        app = worker_app()
        port = await serve(stack, app)
        assert await report(api, spec, url=f"http://127.0.0.1:{port}", max_perf=100.0) == 200
        apps.append(app)
        numbers.append(int(spec["env"]["CONTAINER_ID"]))
    await settle(ctl)
    return t, apps, numbers


async def routed(api: Api) -> list[orm.RoutedRequest]:
    async with api.ctx.sessions() as s:
        return list(await s.scalars(select(orm.RoutedRequest).order_by(orm.RoutedRequest.pk)))


def chat(api: Api, key: str) -> Any:
    sdk = openai.AsyncOpenAI(base_url=f"{api.base_url}/v1", api_key=key, max_retries=0)
    return sdk.chat.completions.create(model="llm", messages=[{"role": "user", "content": "hi"}])


async def test_a_full_worker_is_passed_over_for_one_with_room(api: Api) -> None:
    async with AsyncExitStack() as stack:
        t, (first, second), numbers = await two_workers(api, stack)
        answer = await chat(api, t.key)  # both free: packed on the first
        assert answer.choices[0].message.content == "served"
        assert (len(first.state.seen), len(second.state.seen)) == (1, 0)

        first.state.full = True
        answer = await chat(api, t.key)
        assert answer.choices[0].message.content == "served"
        [idx] = second.state.seen
        assert first.state.seen[-1] == idx  # refused there first, then served here
        row = (await routed(api))[-1]
        assert row.pk == idx and row.worker_id == numbers[1] and row.done_at is None
        logs = await request_logs(api)
        assert [r.status for r in logs] == [200, 200]


async def test_the_refusal_is_the_answer_when_no_worker_has_room(api: Api) -> None:
    async with AsyncExitStack() as stack:
        t, apps, _ = await two_workers(api, stack)
        for app in apps:
            app.state.full = True
        with pytest.raises(openai.RateLimitError):
            await chat(api, t.key)
        [row] = await routed(api)
        assert [len(app.state.seen) for app in apps] == [1, 1]  # each refused it once
        assert row.status == "abandoned" and row.done_at is not None  # not in flight anywhere
        assert [r.status for r in await request_logs(api)] == [429]
