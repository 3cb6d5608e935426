"""A built-in worker runs in the sandbox: the agent's Python, gpuyard and the model files inside
the installed packages are readable there, and its port is reached through the relay."""

from __future__ import annotations

import asyncio
import importlib.util
import os

import httpx
import pytest

from gpuyard.agent.runtimes.process import ProcessRuntime
from gpuyard.core.workload import WorkloadSpec, WorkloadState

from .sandboxing import require_isolation

STARTUP_DEADLINE_S = 90.0


@pytest.fixture
def isolating(runtime: ProcessRuntime) -> ProcessRuntime:
    require_isolation(runtime)
    if importlib.util.find_spec("wordllama") is None:
        reason = "the workers extra is not installed (no wordllama)"
        if os.environ.get("GPUYARD_TEST_REQUIRE_WORKERS") == "1":
            pytest.fail(f"GPUYARD_TEST_REQUIRE_WORKERS=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    return runtime


async def test_the_embeddings_worker_serves_from_inside_the_sandbox(
    isolating: ProcessRuntime,
) -> None:
    spec = WorkloadSpec(
        id="wl_embed",
        image="gpuyard/worker:embeddings",
        args=["--model", "wordllama", "--model-id", "wl"],
        port=8000,
        health_path="/health",
    )
    status = await isolating.start(spec)
    assert status.state is WorkloadState.RUNNING and status.host_port is not None
    url = f"http://127.0.0.1:{status.host_port}"
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        deadline = _now() + STARTUP_DEADLINE_S
        while True:
            current = await isolating.inspect("wl_embed")
            assert current is not None and current.state is WorkloadState.RUNNING, (
                await isolating.logs("wl_embed")
            )
            try:
                if (await client.get("/health")).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert _now() < deadline, await isolating.logs("wl_embed")
            await _pause()
        r = await client.post("/v1/embeddings", json={"model": "wl", "input": ["a GPU", "a cat"]})
    assert r.status_code == 200, r.text
    vectors = [d["embedding"] for d in r.json()["data"]]
    assert len(vectors) == 2 and len(vectors[0]) == 256
    stopped = await isolating.stop("wl_embed", grace_s=15)
    assert stopped.state is WorkloadState.STOPPED


def _now() -> float:
    return asyncio.get_running_loop().time()


async def _pause() -> None:
    await asyncio.sleep(0.1)
