"""Shared by the gateway tests: deploy a cluster whose replicas are fake model servers."""

from __future__ import annotations

import socket
from contextlib import AsyncExitStack
from dataclasses import dataclass

import httpx
import openai
from fastapi import FastAPI
from sqlalchemy import select

from gpuyard.server import orm
from gpuyard.server.controllers.clusters import ClusterController
from tests.harness import Api, Tenant, serve_app
from tests.server.market import FakeHost, join_host

RTX = ("RTX 4090", 24564)


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


async def serve(stack: AsyncExitStack, app: FastAPI) -> int:
    """Serve a fake model server on loopback until ``stack`` closes; its port."""
    return port_of(await stack.enter_async_context(serve_app(app)))


async def request_logs(api: Api) -> list[orm.RequestLog]:
    """Every request-log row, oldest first, once the answers' rows are queued and written."""
    await api.ctx.gateway.settle()
    await api.ctx.gateway.logs.flush()
    async with api.ctx.sessions() as s:
        return list((await s.scalars(select(orm.RequestLog).order_by(orm.RequestLog.pk))).all())


def openai_error(r: httpx.Response, status: int, code: str) -> dict[str, object]:
    """The error object of an answer in the OpenAI error shape, checked field by field."""
    assert r.status_code == status, r.text
    body = r.json()
    assert list(body) == ["error"], body
    error: dict[str, object] = body["error"]
    assert sorted(error) == ["code", "message", "param", "type"], error
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"]
    return error


def dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Deployed:
    api: Api
    tenant: Tenant
    host: FakeHost
    cluster_id: str
    sdk: openai.AsyncOpenAI
    ctl: ClusterController


async def deploy(api: Api, stack: AsyncExitStack, ports: list[int], name: str = "llm") -> Deployed:
    host = await join_host(api, [RTX] * len(ports))
    t = await api.tenant()
    ctl = ClusterController(sessions=api.ctx.sessions, clock=api.clock, owner="t")
    c = (
        await t.client.post(
            "/v1/clusters",
            json={"name": name, "gpu_type": "rtx-4090", "replicas": len(ports), "container": "x"},
        )
    ).json()
    await ctl.step()
    beat = await host.beat()
    for a, port in zip(beat["workloads"], ports, strict=True):
        host.report(a["spec"]["id"], "running", host_port=port)
    await host.beat()
    await ctl.step()
    sdk = openai.AsyncOpenAI(base_url=f"{api.base_url}/v1", api_key=t.key, max_retries=0)
    stack.push_async_callback(sdk.close)
    return Deployed(api, t, host, c["id"], sdk, ctl)
