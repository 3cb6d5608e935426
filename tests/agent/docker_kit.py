"""For tests of the docker runtime on the session's private engine (``tests/docker_engine.py``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import docker
import httpx

from gpuyard.agent.runtimes.docker import DockerRuntime, probe_networking
from gpuyard.core.hosts import PortRange
from gpuyard.core.workload import WorkloadSpec
from tests.docker_engine import BUSYBOX_IMAGE, PrivateEngine

SERVE = (
    'mkdir -p /www && echo "$GREETING from $GPUYARD_WORKLOAD_ID" > /www/index.html'
    ' && echo "serving on $PORT" && exec httpd -f -p "$PORT" -h /www'
)
"""A busybox web server on ``$PORT`` answering ``/index.html``."""


def busybox(workload_id: str, command: str, **fields: Any) -> WorkloadSpec:
    return WorkloadSpec.model_validate(
        {"id": workload_id, "image": BUSYBOX_IMAGE, "command": command, **fields}
    )


@asynccontextmanager
async def engine_runtime(
    engine: PrivateEngine, state_dir: Path, port_range: PortRange, **options: Any
) -> AsyncIterator[DockerRuntime]:
    """A docker runtime on the private engine, as an agent on a loopback-only host builds it;
    every container is removed afterwards."""
    client = engine.client()
    options.setdefault("networking", await asyncio.to_thread(probe_networking, client))
    options.setdefault("use_gpus", False)
    try:
        yield DockerRuntime(
            client, port_range=port_range, listen_host="127.0.0.1", state_dir=state_dir, **options
        )
    finally:
        await asyncio.to_thread(engine.remove_all_containers)
        client.close()


def inspect_container(engine: PrivateEngine, container_id: str | None) -> dict[str, Any]:
    """What the engine says about a container (``docker inspect``)."""
    assert container_id is not None
    client = engine.client()
    try:
        attrs: dict[str, Any] = client.api.inspect_container(container_id)
        return attrs
    finally:
        client.close()


def our_containers(engine: PrivateEngine) -> list[str]:
    client: docker.DockerClient = engine.client()
    try:
        found = client.containers.list(all=True, filters={"label": "gpuyard.workload_id"})
        return sorted(c.name for c in found)
    finally:
        client.close()


async def eventually(check: Callable[[], Any], timeout_s: float = 20.0) -> Any:
    """Call ``check`` (sync or async) until it returns something truthy; answer that."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        found = check()
        if asyncio.iscoroutine(found):
            found = await found
        if found:
            return found
        assert asyncio.get_running_loop().time() < deadline, f"not within {timeout_s}s: {check}"
        await asyncio.sleep(0.05)


async def http_text(port: int, path: str = "/index.html") -> str | None:
    """The body at ``127.0.0.1:port``, or None while nothing answers there yet."""
    try:
        async with httpx.AsyncClient(timeout=2.0) as client:
            r = await client.get(f"http://127.0.0.1:{port}{path}")
    except httpx.HTTPError:
        return None
    return r.text if r.status_code == 200 else None
