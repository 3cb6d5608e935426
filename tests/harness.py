"""A real gpuyard API on loopback for tests: uvicorn in the test's event loop, a manual clock, the
operator key, and helpers to make orgs and keys through the API itself."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from gpuyard.core.clock import ManualClock
from gpuyard.core.credentials import new_api_key
from gpuyard.server.app import create_app
from gpuyard.server.context import AppContext
from gpuyard.server.db import write_session
from gpuyard.server.services.bootstrap import ensure_operator
from gpuyard.server.settings import Settings

# Every client the tests make shares one TLS context: httpx would otherwise load the system's
# certificates for each (about 20 ms of CPU), although these clients speak plain HTTP.
TLS = ssl.create_default_context()


@dataclass
class Tenant:
    org_id: str
    key: str
    client: httpx.AsyncClient


@dataclass
class Api:
    app: FastAPI
    ctx: AppContext
    clock: ManualClock
    base_url: str
    operator_key: str
    operator_org: str
    client: httpx.AsyncClient  # authenticated as the operator
    opened: list[httpx.AsyncClient] = field(default_factory=list)

    def client_for(self, key: str | None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        client = httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=30, verify=TLS)
        self.opened.append(client)
        return client

    async def tenant(self, name: str = "Acme", scopes: list[str] | None = None) -> Tenant:
        org = (await self.client.post("/v1/admin/orgs", json={"name": name})).json()
        body: dict[str, Any] = {"name": "first", "scopes": scopes or ["org:write"]}
        r = await self.client.post(f"/v1/admin/orgs/{org['id']}/api-keys", json=body)
        assert r.status_code == 201, r.text
        key = r.json()["key"]
        return Tenant(org_id=org["id"], key=key, client=self.client_for(key))


@asynccontextmanager
async def serve_app(app: FastAPI) -> AsyncIterator[str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # TCP_NODELAY
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, lifespan="on", log_level="warning", timeout_graceful_shutdown=2)
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.005)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@asynccontextmanager
async def start_api(db_url: str, data_dir: Path, **settings: Any) -> AsyncIterator[Api]:
    clock = ManualClock()
    app = create_app(
        Settings(database_url=db_url, data_dir=data_dir, **settings),
        clock=clock,
        migrate_on_start=False,
        run_controllers=False,
    )
    ctx: AppContext = app.state.ctx
    secret = new_api_key()
    async with write_session(ctx.sessions) as session:
        boot = await ensure_operator(session, clock=clock, admin_key=secret)
    async with serve_app(app) as base_url:
        client = httpx.AsyncClient(
            base_url=base_url,
            headers={"Authorization": f"Bearer {secret}"},
            timeout=30,
            verify=TLS,
        )
        running = Api(
            app=app,
            ctx=ctx,
            clock=clock,
            base_url=base_url,
            operator_key=secret,
            operator_org=boot.org.id,
            client=client,
        )
        try:
            yield running
        finally:
            for c in [client, *running.opened]:
                await c.aclose()
