"""Shared by the gateway tests: deploy a cluster whose replicas are fake model servers."""

from __future__ import annotations

import socket
from contextlib import AsyncExitStack
from dataclasses import dataclass

import openai

from gpuyard.server.controllers.clusters import ClusterController
from tests.harness import Api, Tenant
from tests.server.market import FakeHost, join_host

RTX = ("RTX 4090", 24564)


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
    ctl = ClusterController(sessions=api.ctx.sessions, clock=api.clock, owner="t", default_price=50)
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
    api.ctx.gateway.directory.invalidate()
    sdk = openai.AsyncOpenAI(base_url=f"{api.base_url}/v1", api_key=t.key, max_retries=0)
    stack.push_async_callback(sdk.close)
    return Deployed(api, t, host, c["id"], sdk, ctl)
