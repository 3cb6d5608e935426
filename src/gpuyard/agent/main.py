"""The agent's composition root: from ``AgentOptions`` to a running ``Supervisor``.

``gpuyard agent`` calls ``run_agent`` from its own ``asyncio.run``; ``gpuyard up`` runs a local
agent with it inside the server's event loop (``wait_for_server=True``: the API may not listen yet).
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from gpuyard.agent.backoff import Backoff
from gpuyard.agent.gpus import (
    GpuProbe,
    GpuProbeResult,
    NvmlProbe,
    collect_facts,
    listen_host,
    parse_gpu_declaration,
)
from gpuyard.agent.ports import DEFAULT_PORT_RANGE
from gpuyard.agent.runtimes.choice import choose_runtime
from gpuyard.agent.runtimes.docker_spec import ResourceShare
from gpuyard.agent.runtimes.sandbox import SandboxConfig
from gpuyard.agent.state import DEFAULT_STATE_DIR, AgentState, StateError
from gpuyard.agent.supervisor import Supervisor
from gpuyard.agent.transport import AgentTransport, HttpTransport, normalize_server_url
from gpuyard.core.clock import Clock, SystemClock
from gpuyard.core.hosts import GpuInfo, HostFacts, Isolation, PortRange

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AgentOptions:
    server_url: str | None = None
    """Required unless the state dir holds a registration (then it must match, if given)."""
    join_token: str | None = None
    """Spent on the first registration only; ignored once the state dir holds one."""
    gpus: str | None = None
    """Logical GPUs (``"RTX 4090:2"``) used where NVML finds none."""
    state_dir: Path = DEFAULT_STATE_DIR
    runtime: str = "auto"
    port_range: PortRange = DEFAULT_PORT_RANGE
    address: str | None = None
    """What the server and gateway dial to reach workloads; the outward address when ``None``."""
    name: str | None = None
    wait_for_server: bool = False
    """Retry a first registration the server cannot answer yet, instead of failing at once."""
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    """How the process runtime sandboxes workloads (``agent/runtimes/sandbox.py``)."""
    stop_workloads_on_exit: bool = False
    """Stopping the agent also stops its workloads (``gpuyard up``); the next start runs again
    those the server still wants running. ``False`` (``gpuyard agent``): they keep running and
    the next agent re-adopts them."""


class HostFactsSource:
    """The facts of this host, read afresh for every heartbeat."""

    def __init__(
        self,
        *,
        probe: GpuProbe,
        declared: list[GpuInfo],
        disk_path: Path,
        port_range: PortRange,
        address: str | None,
        isolation: Isolation,
    ) -> None:
        self._probe = probe
        self._declared = declared
        self._disk_path = disk_path
        self._port_range = port_range
        self._address = address
        self._isolation = isolation

    async def __call__(self) -> HostFacts:
        return await collect_facts(
            probe=self._probe,
            declared=self._declared,
            disk_path=self._disk_path,
            port_range=self._port_range,
            address=self._address,
            isolation=self._isolation,
        )


async def run_agent(
    options: AgentOptions,
    stop_event: asyncio.Event,
    *,
    transport: AgentTransport | None = None,
    probe: GpuProbe | None = None,
    clock: Clock | None = None,
    backoff: Backoff | None = None,
    joined: asyncio.Event | None = None,
) -> None:
    """Run the agent until ``stop_event`` is set; its workloads keep running afterwards unless
    ``options.stop_workloads_on_exit``. ``joined`` is set once a heartbeat has succeeded.

    Raises, before the loop starts: ``StateError`` (state dir unusable or held by another agent, no
    registration and no token, another server), ``ValueError`` (bad --gpus, --server or runtime
    name), ``core.errors.Unavailable`` (``docker`` asked for and no engine answers), and unless
    ``wait_for_server``, what the first registration raises (``ServerUnavailable``,
    ``AgentRejected``). While running, only ``AgentRejected`` ends it with an error.
    """
    state = AgentState.open(options.state_dir)
    with state.lock():
        saved = state.load_registration()
        server_url = _server_url(options, state)
        declared = (
            parse_gpu_declaration(options.gpus, seed=state.gpu_seed()) if options.gpus else []
        )
        probe = probe or NvmlProbe()
        found = await asyncio.to_thread(probe.probe)
        _announce_gpus(found.gpus, declared)
        runtime = await choose_runtime(
            options.runtime,
            state.runtime_dir,
            port_range=options.port_range,
            clock=clock,
            use_gpus=bool(found.gpus),
            listen_host=listen_host(options.address),
            sandbox=options.sandbox,
            share=host_share(len(found.gpus or declared)),
            server_url=server_url,
        )
        if saved is not None and options.join_token:
            log.info("already registered as host %s; the join token is not used", saved.host_id)
        http = None
        if transport is None:
            transport = http = HttpTransport(server_url)
        try:
            supervisor = Supervisor(
                transport,
                runtime,
                HostFactsSource(
                    # NVML is asked again each heartbeat only where it found GPUs at start.
                    probe=probe if found.gpus else _Probed(found),
                    declared=declared,
                    disk_path=state.root,
                    port_range=options.port_range,
                    address=options.address,
                    isolation=runtime.isolation,
                ),
                clock or SystemClock(),
                state,
                server_url=server_url,
                join_token=None if saved is not None else options.join_token,
                name=options.name,
                waiter=transport.wait_for_work if isinstance(transport, HttpTransport) else None,
                backoff=backoff,
                stop_workloads_on_exit=options.stop_workloads_on_exit,
                joined=joined,
            )
            if not options.wait_for_server:
                await supervisor.register()
            log.info(
                "agent for %s: %s runtime, ports %s, state in %s",
                server_url,
                runtime.name,
                options.port_range,
                state.root,
            )
            _announce_isolation(runtime.isolation)
            await supervisor.run(stop_event)
        finally:
            if http is not None:
                await http.aclose()


def host_share(gpus: int) -> ResourceShare:
    """This host's CPUs and memory, which containers share in proportion to their GPUs."""
    return ResourceShare(
        cpu_cores=float(psutil.cpu_count(logical=True) or os.cpu_count() or 1),
        ram_mb=psutil.virtual_memory().total // (1024 * 1024),
        gpus=gpus,
    )


class _Probed:
    """A probe that answers what an earlier probe found."""

    def __init__(self, result: GpuProbeResult) -> None:
        self._result = result

    def probe(self) -> GpuProbeResult:
        return self._result


def _server_url(options: AgentOptions, state: AgentState) -> str:
    if options.server_url:
        return normalize_server_url(options.server_url)
    saved = state.load_registration()
    if saved is None:
        raise StateError(
            f"--server is needed: {state.root} holds no registration yet "
            "(first start: gpuyard agent --server URL --token TOKEN)"
        )
    return saved.server_url


def _announce_gpus(found: list[GpuInfo], declared: list[GpuInfo]) -> None:
    if found:
        log.info("NVML found %d GPU(s): %s", len(found), _names(found))
        if declared:
            log.info("--gpus is ignored: NVML found real GPUs")
    elif declared:
        log.info(
            "no NVIDIA GPU found; using %d declared GPU(s): %s", len(declared), _names(declared)
        )
    else:
        log.warning("no NVIDIA GPU found and none declared with --gpus: this host offers no GPU")


def _announce_isolation(isolation: Isolation) -> None:
    if isolation.isolates:
        log.info("workloads are isolated (%s): any org's may run here", isolation.sandbox)
    else:
        log.warning(
            "workloads are not isolated (%s): the server places only the operator's own "
            "workloads here, unless the operator marks this host trusted",
            isolation.reason,
        )


def _names(gpus: list[GpuInfo]) -> str:
    counts: dict[str, int] = {}
    for gpu in gpus:
        counts[gpu.name] = counts.get(gpu.name, 0) + 1
    return ", ".join(f"{count} x {name}" for name, count in counts.items())
