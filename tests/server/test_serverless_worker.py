"""A real serverless worker process (``gpuyard worker serverless``) with the environment the
autoscaler gives it, against a real server on both databases: it fetches /pubkey/, measures and
reports its perf, becomes ready, serves a request routed from zero with its signed grant, refuses
a replayed or forged grant (401), and reports the request done."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from gpuyard.core.autoscaling import DEFAULT_TUNING
from gpuyard.server import orm
from tests.harness import Api
from tests.server.market import join_host
from tests.server.serverless_kit import RTX, autoscaler, make_endpoint, run_assigned, settle

pytestmark = pytest.mark.slow
DEADLINE_S = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def worker_process(spec: dict[str, Any], port: int) -> AsyncIterator[None]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
        **spec["env"],
        "PORT": str(port),
        f"VAST_TCP_PORT_{spec['env']['WORKER_PORT']}": str(port),
    }
    args = ["-m", "gpuyard.cli.main", "worker", "serverless", "--host", "127.0.0.1"]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *args,
        "--port",
        str(port),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield
    finally:
        proc.terminate()
        _, err = await asyncio.wait_for(proc.communicate(), timeout=20)
        print(err.decode()[-3000:])


async def until(check: Any) -> Any:
    """Poll ``check`` (an async callable) until it returns something truthy: the worker is a
    separate process, so this waits on it, not on time."""
    loop = asyncio.get_running_loop()
    end = loop.time() + DEADLINE_S
    while True:
        found = await check()
        if found:
            return found
        assert loop.time() < end, "the worker did not get there in time"
        await asyncio.sleep(0.05)


async def test_a_real_worker_serves_a_signed_request_from_zero(api: Api) -> None:
    host = await join_host(api, [RTX])
    t = await api.tenant()
    ctl = autoscaler(api)
    ep = await make_endpoint(t, inactivity_timeout=60)
    plain = api.client_for(None)
    route = {"endpoint": "llm", "api_key": ep["api_key"], "cost": 100, "request_idx": 0}
    waiting = (await plain.post("/route/", json=route)).json()
    assert "url" not in waiting
    await settle(ctl)
    [spec] = (await run_assigned(host)).values()
    await settle(ctl)
    port = free_port()
    async with worker_process(spec, port):

        async def ready() -> list[dict[str, Any]]:
            r = await t.client.post("/get_endpoint_workers/", json={"id": ep["id"]})
            return [w for w in r.json() if w["status"] == "idle"]

        [w] = await until(ready)
        assert w["perf"] > 0 and w["loadtime"] > 0
        poll = {**route, "request_idx": waiting["request_idx"]}
        grant = (await plain.post("/route/", json=poll)).json()
        assert grant["url"] == f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=grant["url"], timeout=30) as worker:
            body = {"auth_data": grant, "payload": {"prompt": "hello"}}
            r = await worker.post("/generate", json=body)
            assert r.status_code == 200, r.text
            assert len(r.json()["result"]) == 64
            replay = await worker.post("/generate", json=body)
            assert replay.status_code == 401 and "already used" in replay.text
            fresh = (await plain.post("/route/", json=route)).json()
            forged = {**fresh, "url": "http://elsewhere:1"}
            r = await worker.post("/generate", json={"auth_data": forged, "payload": {}})
            assert r.status_code == 401 and "signature" in r.text
            r = await worker.post("/generate", json={"payload": {}})
            assert r.status_code == 400

            r = await worker.post("/generate", json={"auth_data": fresh, "payload": {}})
            assert r.status_code == 200, r.text

        async def done() -> bool:  # the worker reported both requests done
            async with api.ctx.sessions() as s:
                rows = [await s.get(orm.RoutedRequest, g["request_idx"]) for g in (grant, fresh)]
            return all(row is not None and row.status == "done" for row in rows)

        await until(done)

        async def reported_idle() -> bool:  # and its own report says so (it reports on its own)
            r = await t.client.post("/get_endpoint_workers/", json={"id": ep["id"]})
            return all(w["reqs_working"] == 0 for w in r.json())

        await until(reported_idle)
        # Quiet past inactivity_timeout and the policy's hold, nothing in flight: to zero.
        api.clock.advance(DEFAULT_TUNING.scale_down_hold + DEFAULT_TUNING.smoothing + 5)
        await settle(ctl)
        [w] = (await t.client.post("/get_endpoint_workers/", json={"id": ep["id"]})).json()
        assert w["status"] == "stopping"


async def test_vasts_serverless_client_reaches_a_worker_started_from_zero(api: Api) -> None:
    """``vastai.serverless.client`` with ``autoscaler_url`` and ``webserver_url`` pointed at us
    (and a default SSL context instead of the root certificate it downloads): it finds the
    endpoint, routes, polls while the worker starts, and calls the worker with its grant."""
    from vastai.serverless.client import CoroutineServerless

    host = await join_host(api, [RTX])
    t = await api.tenant()
    ctl = autoscaler(api)
    await make_endpoint(t, inactivity_timeout=60)
    client = CoroutineServerless(
        api_key=t.key, autoscaler_url=api.base_url, webserver_url=api.base_url
    )
    client._ssl_context = ssl.create_default_context()  # offline: no root certificate download
    try:
        ep = await client.get_endpoint("llm")
        assert ep.data.api_key.startswith("ep-")
        call = asyncio.ensure_future(ep.request("/generate", {"prompt": "hi"}, cost=100))

        async def placed() -> dict[str, Any]:
            await settle(ctl)  # the client's waiting request brings a worker up
            return await run_assigned(host)

        [spec] = (await until(placed)).values()
        await settle(ctl)
        async with worker_process(spec, free_port()):
            answer = await asyncio.wait_for(call, timeout=DEADLINE_S)
    finally:
        await client.close()
    assert len(answer["response"]["result"]) == 64, answer
