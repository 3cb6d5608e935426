"""Vultr's chat model list (``GET /v1/chat/models``): the models of clusters their owners declare
``task: chat``, those the operator publishes (``models``) apart from the caller's org's own
(``private_models``), on SQLite and Postgres; the task set at creation, changed and cleared."""

from __future__ import annotations

from contextlib import AsyncExitStack

from sqlalchemy import update

from gpuyard.server import orm
from gpuyard.server.db import write_session
from tests.gateway.kit import Deployed, deploy, openai_error, serve
from tests.gateway.upstream import fake_model_server
from tests.harness import Api


async def _task(d: Deployed, task: str | None) -> None:
    r = await d.tenant.client.patch(f"/v1/clusters/{d.cluster_id}", json={"task": task})
    assert r.status_code == 200, r.text
    assert r.json()["task"] == task


async def test_chat_models_published_and_private(api: Api) -> None:
    async with AsyncExitStack() as stack:

        async def deployed(model: str, name: str) -> Deployed:
            return await deploy(api, stack, [await serve(stack, fake_model_server(model))], name)

        published = await deployed("tiny", "pub")
        published_embedder = await deployed("pub-embed", "pub-embed")
        mine = await deployed("my-llama", "mine")
        others = await deployed("their-llama", "theirs")
        undeclared = await deployed("mystery", "undeclared")
        async with write_session(api.ctx.sessions) as s:  # the operator publishes these two
            await s.execute(
                update(orm.Cluster)
                .where(orm.Cluster.id.in_([published.cluster_id, published_embedder.cluster_id]))
                .values(public=True)
            )
        await _task(published, "chat")
        await _task(published_embedder, "embeddings")
        await _task(mine, "chat")
        await _task(others, "chat")
        await api.ctx.gateway.directory.refresh()

        r = await mine.tenant.client.get("/v1/chat/models")
        assert r.status_code == 200, r.text
        assert r.json() == {"models": ["tiny"], "private_models": ["my-llama"]}
        theirs = await others.tenant.client.get("/v1/chat/models")
        assert theirs.json() == {"models": ["tiny"], "private_models": ["their-llama"]}
        stranger = (await api.tenant("Stranger")).client
        assert (await stranger.get("/v1/chat/models")).json() == {
            "models": ["tiny"],
            "private_models": [],
        }
        # Undeclared or another task: served all the same, in /v1/models, in no chat list.
        listed = await undeclared.tenant.client.get("/v1/models")
        assert {m["id"] for m in listed.json()["data"]} == {"tiny", "pub-embed", "mystery"}
        assert (await undeclared.tenant.client.get("/v1/chat/models")).json() == {
            "models": ["tiny"],
            "private_models": [],
        }

        # Cleared (null), the owner's model leaves the list; a task that is not one is refused.
        await _task(mine, None)
        bad = await mine.tenant.client.patch(
            f"/v1/clusters/{mine.cluster_id}", json={"task": "dance"}
        )
        assert bad.status_code == 422, bad.text
        got = await mine.tenant.client.get(f"/v1/clusters/{mine.cluster_id}")
        assert got.json()["task"] is None
        await api.ctx.gateway.directory.refresh()
        assert (await mine.tenant.client.get("/v1/chat/models")).json() == {
            "models": ["tiny"],
            "private_models": [],
        }

    # Declared at creation; the list answers errors in the OpenAI shape.
    t = await api.tenant("Creator")
    made = await t.client.post(
        "/v1/clusters",
        json={"name": "c", "gpu_type": "rtx-4090", "replicas": 0, "container": "x", "task": "chat"},
    )
    assert made.status_code == 201, made.text
    assert made.json()["task"] == "chat"
    openai_error(await api.client_for(None).get("/v1/chat/models"), 401, "missing_api_key")
    openai_error(
        await api.client_for("gy_not_a_key").get("/v1/chat/models"), 401, "invalid_api_key"
    )
