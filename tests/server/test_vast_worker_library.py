"""Vast's own worker library (``vastai.serverless.server``, in the ``vastai`` package) runs
unchanged as a gpuyard serverless worker, given the environment the autoscaler gives a worker:
it fetches /pubkey/, benchmarks its model server, reports itself ready, and serves a request
that Vast's serverless client routes through gpuyard from zero (both databases)."""

from __future__ import annotations

import asyncio
import os
import ssl
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.harness import Api
from tests.server.market import join_host
from tests.server.serverless_kit import RTX, autoscaler, make_endpoint, run_assigned, settle
from tests.server.test_serverless_worker import DEADLINE_S, free_port, until

pytestmark = pytest.mark.slow

WORKER_SCRIPT = """
import os
from vastai.serverless.server.worker import (
    BenchmarkConfig, HandlerConfig, LogActionConfig, Worker, WorkerConfig,
)

Worker(WorkerConfig(
    model_server_url="http://127.0.0.1",
    model_server_port=int(os.environ["MODEL_PORT"]),
    model_log_file=os.environ["MODEL_LOG"],
    handlers=[HandlerConfig(
        route="/generate",
        allow_parallel_requests=True,
        benchmark_config=BenchmarkConfig(
            dataset=[{"prompt": "bench"}], runs=2, concurrency=1, do_warmup=False
        ),
        workload_calculator=lambda payload: 100.0,
    )],
    log_action_config=LogActionConfig(on_load=["MODEL READY"]),
)).run()
"""


async def model_server(port: int) -> web.AppRunner:
    """The model a Vast worker fronts: echoes the prompt back."""

    async def generate(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"text": f"echo: {body.get('prompt')}"})

    app = web.Application()
    app.router.add_post("/generate", generate)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def test_vasts_worker_library_serves_through_gpuyard(api: Api, tmp_path: Path) -> None:
    from vastai.serverless.client import CoroutineServerless

    host = await join_host(api, [RTX])
    t = await api.tenant()
    ctl = autoscaler(api)
    await make_endpoint(t, inactivity_timeout=60)
    model_port, worker_port = free_port(), free_port()
    log_file = tmp_path / "model.log"
    log_file.write_text("loading...\nMODEL READY\n")
    (tmp_path / "worker.py").write_text(WORKER_SCRIPT)
    model = await model_server(model_port)
    client = CoroutineServerless(
        api_key=t.key, autoscaler_url=api.base_url, webserver_url=api.base_url
    )
    client._ssl_context = ssl.create_default_context()  # offline: no root certificate download
    proc = None
    try:
        ep = await client.get_endpoint("llm")
        call = asyncio.ensure_future(ep.request("/generate", {"prompt": "hi"}, cost=100))

        async def placed() -> dict[str, Any]:
            await settle(ctl)
            return await run_assigned(host)

        [spec] = (await until(placed)).values()
        await settle(ctl)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
            "HOME": str(tmp_path),
            **spec["env"],
            # What the worker's command prelude sets on the process runtime, from its $PORT.
            "WORKER_PORT": str(worker_port),
            f"VAST_TCP_PORT_{worker_port}": str(worker_port),
            "WORKER_HTTP_PORT": str(free_port()),
            "MODEL_PORT": str(model_port),
            "MODEL_LOG": str(log_file),
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(tmp_path / "worker.py"),
            env=env,
            cwd=tmp_path,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        answer = await asyncio.wait_for(call, timeout=DEADLINE_S)
        assert answer["response"] == {"text": "echo: hi"}, answer
        [w] = (await t.client.post("/get_endpoint_workers/", json={"id": ep.data.id})).json()
        assert w["status"] == "idle" and w["perf"] > 0
    finally:
        await client.close()
        await model.cleanup()
        if proc is not None:
            proc.terminate()
            _, err = await asyncio.wait_for(proc.communicate(), timeout=20)
            print(err.decode()[-4000:])
