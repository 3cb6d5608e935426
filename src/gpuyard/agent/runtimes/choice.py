"""Choosing the runtime an agent runs workloads with: ``process`` (subprocesses) or ``docker``
(containers), by name, or ``auto``: ``docker`` when the Docker engine the environment names
(``DOCKER_HOST``, else the local socket) answers a ping, else ``process``.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from docker.errors import DockerException

from gpuyard.agent.runtimes.base import Runtime
from gpuyard.agent.runtimes.docker import DockerRuntime, probe_networking
from gpuyard.agent.runtimes.docker_client import (
    DockerClientLike,
    connect_docker,
    docker_available,
)
from gpuyard.agent.runtimes.docker_spec import ResourceShare
from gpuyard.agent.runtimes.process import ProcessRuntime
from gpuyard.agent.runtimes.sandbox import SandboxConfig, open_sandbox
from gpuyard.core.clock import Clock
from gpuyard.core.errors import Unavailable
from gpuyard.core.hosts import PortRange

__all__ = ["RUNTIME_NAMES", "choose_runtime"]

log = logging.getLogger(__name__)

RUNTIME_NAMES = ("auto", "process", "docker")


async def choose_runtime(
    name: str | None,
    state_dir: Path,
    *,
    port_range: PortRange,
    clock: Clock | None = None,
    docker_client: DockerClientLike | None = None,
    use_gpus: bool = True,
    listen_host: str = "127.0.0.1",
    docker_timeout_s: float = 2.0,
    sandbox: SandboxConfig | None = None,
    share: ResourceShare | None = None,
    server_url: str | None = None,
) -> Runtime:
    """The runtime called ``name`` (``process``, ``docker``; ``None`` or ``auto`` to pick).

    ``docker_client`` replaces the client built from the environment (``DOCKER_HOST`` or the local
    socket). ``use_gpus=False`` tells the docker runtime the host's GPUs are logical (declared), so
    containers get no GPU device requests. ``listen_host`` is where workloads' ports are
    published. ``sandbox`` is how the process runtime sandboxes (``sandbox.py``); ``on`` where
    no sandbox can run raises ``Unavailable`` (``sandbox_unavailable``); its read-only paths are
    mounted read-only into containers too. ``share`` (the host's CPUs, memory and GPUs) gives
    containers CPU and memory limits in proportion to their GPUs. ``server_url``, the server the
    agent reports to, is where the process runtime relays a sandboxed workload that asks for it
    (``server_relay.py``).
    """
    choice = (name or "auto").strip().lower()
    if choice not in RUNTIME_NAMES:
        raise ValueError(f"unknown runtime {name!r}: expected one of {', '.join(RUNTIME_NAMES)}")
    config = sandbox or SandboxConfig()
    if choice == "process":
        return await _process_runtime(state_dir, port_range, clock, listen_host, config, server_url)
    client = docker_client
    if client is None:
        try:
            # A client for the ping that waits no longer than it may, one for the work after.
            probe = await asyncio.to_thread(connect_docker, docker_timeout_s)
            if await docker_available(probe, timeout_s=docker_timeout_s):
                client = await asyncio.to_thread(connect_docker)
        except DockerException as exc:
            log.info("no Docker engine: %s", exc)
    elif not await docker_available(client, timeout_s=docker_timeout_s):
        client = None
    if client is not None:
        return DockerRuntime(
            client,
            port_range=port_range,
            clock=clock,
            use_gpus=use_gpus,
            listen_host=listen_host,
            state_dir=state_dir,
            networking=await asyncio.to_thread(probe_networking, client),
            read_only=config.read_only,
            hidden=config.private,
            share=share,
        )
    if choice == "docker":
        raise Unavailable(
            "no Docker engine answers (is dockerd running, is DOCKER_HOST right?); "
            "use the process runtime instead",
            code="docker_unavailable",
        )
    log.info("no Docker engine answers; using the process runtime")
    return await _process_runtime(state_dir, port_range, clock, listen_host, config, server_url)


async def _process_runtime(
    state_dir: Path,
    port_range: PortRange,
    clock: Clock | None,
    listen_host: str,
    sandbox: SandboxConfig,
    server_url: str | None,
) -> ProcessRuntime:
    await asyncio.to_thread(open_sandbox, sandbox)  # the trial runs a process; cached after
    return ProcessRuntime(
        state_dir,
        port_range,
        clock=clock,
        listen_host=listen_host,
        sandbox=sandbox,
        server_url=server_url,
    )
