"""Voices and the audio model list, gathered from the speech deployments a caller can reach
(each replica's ``GET /v1/audio/voices``), on SQLite and Postgres."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

from fastapi import FastAPI
from sqlalchemy import update

from gpuyard.server import orm
from gpuyard.server.db import write_session
from tests.gateway.kit import deploy, openai_error, serve
from tests.gateway.upstream import fake_model_server
from tests.harness import Api


def speech_server(model: str, voices: list[str]) -> FastAPI:
    app = FastAPI()

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": model, "object": "model", "created": 0}]}

    @app.get("/v1/audio/voices")
    async def listed() -> dict[str, list[str]]:
        return {"voices": voices}

    return app


async def test_voices_of_the_speech_deployments_you_can_reach(api: Api) -> None:
    async with AsyncExitStack() as stack:
        mine = await deploy(
            api, stack, [await serve(stack, speech_server("tts-a", ["alba", "en-us"]))], "a"
        )
        published = await deploy(
            api, stack, [await serve(stack, speech_server("tts-b", ["en-us", "fr"]))], "b"
        )
        async with write_session(api.ctx.sessions) as s:
            await s.execute(
                update(orm.Cluster)
                .where(orm.Cluster.id == published.cluster_id)
                .values(public=True)
            )
        await deploy(api, stack, [await serve(stack, speech_server("tts-c", ["secret"]))], "c")
        await deploy(api, stack, [await serve(stack, fake_model_server("chat"))], "d")
        await api.ctx.gateway.directory.refresh()

        c = mine.tenant.client
        r = await c.get("/v1/audio/voices")
        assert r.status_code == 200, r.text
        assert r.json() == {"voices": ["alba", "en-us", "fr"]}  # not another org's private one
        assert (await c.get("/v1/audio/models")).json() == {"speech": ["tts-a", "tts-b"]}

        stranger = (await api.tenant("Stranger")).client
        assert (await stranger.get("/v1/audio/voices")).json() == {"voices": ["en-us", "fr"]}
        assert (await stranger.get("/v1/audio/models")).json() == {"speech": ["tts-b"]}
    openai_error(await api.client_for(None).get("/v1/audio/voices"), 401, "missing_api_key")
