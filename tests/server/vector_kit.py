"""Shared by the vector store tests: a real API with an embedding deployment (and a chat one)
that the operator publishes to every org, and helpers over plain HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import update

from gpuyard.server import orm
from gpuyard.server.db import write_session
from tests.gateway.kit import Deployed, deploy, serve
from tests.gateway.upstream import fake_model_server
from tests.harness import Api, Tenant, start_api
from tests.server.embedding_server import embedding_server

MODEL = "words"
FRUIT = [
    "apples and pears grow in the orchard",
    "the orchard has cherry trees",
    "bananas are yellow fruit",
]
ENGINES = [
    "the diesel engine needs oil",
    "a jet engine burns kerosene",
    "electric motors need no oil",
]


@dataclass
class Vectors:
    api: Api
    deployed: Deployed
    model_server: FastAPI
    chat_server: FastAPI | None = None

    @property
    def tenant(self) -> Tenant:
        return self.deployed.tenant

    @property
    def client(self) -> httpx.AsyncClient:
        return self.deployed.tenant.client


@asynccontextmanager
async def started(
    db_url: str, tmp_path: Path, *, chat: bool = False, **settings: Any
) -> AsyncIterator[Vectors]:
    """The API, the published embedding model ``words`` and, with ``chat``, the published chat
    model ``tiny`` (tests/gateway/upstream.py)."""
    async with (
        start_api(db_url, tmp_path, vector_embedding_model=MODEL, **settings) as api,
        AsyncExitStack() as stack,
    ):
        server = embedding_server(MODEL)
        port = await serve(stack, server)
        deployed = await deploy(api, stack, [port], name="embedder")
        await publish(api, deployed.cluster_id)
        chat_server = None
        if chat:
            chat_server = fake_model_server("tiny")
            chatter = await deploy(api, stack, [await serve(stack, chat_server)], name="chat")
            await publish(api, chatter.cluster_id)
        yield Vectors(api, deployed, server, chat_server)


async def publish(api: Api, cluster_id: str) -> None:
    """The operator publishes the embedding deployment to every org (as ``gpuyard up --demo``
    does), so each test org may embed with it."""
    async with write_session(api.ctx.sessions) as s:
        await s.execute(update(orm.Cluster).where(orm.Cluster.id == cluster_id).values(public=True))
    await api.ctx.gateway.directory.refresh()


async def collection(client: httpx.AsyncClient, name: str = "docs") -> str:
    r = await client.post("/v1/vector_store", json={"name": name})
    assert r.status_code == 201, r.text
    return str(r.json()["collection"]["id"])


async def add(client: httpx.AsyncClient, cid: str, content: str, **extra: str) -> dict[str, Any]:
    r = await client.post(f"/v1/vector_store/{cid}/items", json={"content": content, **extra})
    assert r.status_code == 201, r.text
    return r.json()
