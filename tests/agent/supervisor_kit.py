"""Shared by the supervisor tests: host facts, a supervisor over a fake server, process counting."""

from __future__ import annotations

import asyncio
import builtins
import time
from pathlib import Path
from typing import Any

import psutil

from gpuyard.agent.backoff import Backoff
from gpuyard.agent.runtimes.base import Runtime
from gpuyard.agent.runtimes.process import ProcessRuntime
from gpuyard.agent.runtimes.process_state import WorkloadDir
from gpuyard.agent.state import AgentState
from gpuyard.agent.supervisor import Supervisor
from gpuyard.agent.transport import HttpTransport
from gpuyard.core.clock import ManualClock
from gpuyard.core.hosts import GpuInfo, HostFacts, Isolation, PortRange
from gpuyard.core.workload import WorkloadSpec, WorkloadStatus
from tests.harness import Api

from .fake_server import FakeServer

SERVER_URL = "http://gpuyard.test"
SLEEPS = "exec sleep 60"


def facts(port_range: PortRange, isolation: Isolation | None = None, *, gpus: int = 1) -> HostFacts:
    return HostFacts(
        gpus=[
            GpuInfo(index=i, uuid=f"GPU-test-{i}", name="RTX 4090", vram_mb=24564, logical=True)
            for i in range(gpus)
        ],
        driver_version=None,
        cuda_version=None,
        cpu_cores=4,
        ram_mb=8192,
        disk_free_mb=1000,
        disk_total_mb=2000,
        hostname="test-host",
        address="127.0.0.1",
        port_range=port_range,
        os="Linux",
        isolation=isolation,
    )


def make_supervisor(
    server: FakeServer,
    runtime: Runtime,
    state_dir: Path,
    port_range: PortRange,
    *,
    clock: ManualClock | None = None,
    **kwargs: Any,
) -> Supervisor:
    """A supervisor that waits for its actions (unless told otherwise) and never jitters."""
    host_facts = facts(port_range)

    async def source() -> HostFacts:
        return host_facts

    kwargs.setdefault("join_token", "gyj_test")
    kwargs.setdefault("action_wait_s", None)
    kwargs.setdefault("stop_grace_s", 2.0)
    kwargs.setdefault("backoff", Backoff(random_fn=lambda: 0.0))
    return Supervisor(
        server,
        runtime,
        source,
        clock or ManualClock(),
        AgentState.open(state_dir),
        server_url=SERVER_URL,
        **kwargs,
    )


async def joining_supervisor(
    api: Api, transport: HttpTransport, runtime: Runtime, state_dir: Path, host_facts: HostFacts
) -> Supervisor:
    """A supervisor for the real server ``api``, with a fresh join token, not yet registered."""
    r = await api.client.post("/v1/admin/join-tokens", json={"name": host_facts.hostname})
    assert r.status_code == 201, r.text

    async def source() -> HostFacts:
        return host_facts

    return Supervisor(
        transport,
        runtime,
        source,
        ManualClock(),
        AgentState.open(state_dir),
        server_url=api.base_url,
        join_token=r.json()["token"],
        action_wait_s=None,
        stop_grace_s=2.0,
    )


def spec(workload_id: str, command: str | None = SLEEPS, **kwargs: Any) -> WorkloadSpec:
    return WorkloadSpec(id=workload_id, command=command, **kwargs)


def live_wrappers(state_dir: Path, workload_id: str) -> list[psutil.Process]:
    """Live wrapper processes (children of this test process) running ``workload_id``."""
    exit_file = str(WorkloadDir(state_dir, workload_id).exit_path)
    found = []
    for proc in psutil.Process().children():
        try:
            if exit_file in _cmdline(proc) and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.NoSuchProcess:
            continue
    return found


def _cmdline(proc: psutil.Process) -> list[str]:
    """A process's argv; read again while it is empty (a child caught in the middle of exec)."""
    deadline = time.monotonic() + 2.0
    while not (argv := proc.cmdline()) and time.monotonic() < deadline:
        time.sleep(0.001)
    return argv


class GatedRuntime:
    """The process runtime with a gate ``start()`` waits at and a switch that breaks ``list()``."""

    def __init__(self, inner: ProcessRuntime) -> None:
        self.inner = inner
        self.name = inner.name
        self.open = asyncio.Event()
        self.starts = 0
        self.broken = False

    async def start(self, spec: WorkloadSpec) -> WorkloadStatus:
        await self.open.wait()
        self.starts += 1
        return await self.inner.start(spec)

    async def inspect(self, workload_id: str) -> WorkloadStatus | None:
        return await self.inner.inspect(workload_id)

    async def stop(self, workload_id: str, grace_s: float = 10.0) -> WorkloadStatus:
        return await self.inner.stop(workload_id, grace_s)

    async def remove(self, workload_id: str) -> None:
        await self.inner.remove(workload_id)

    async def logs(self, workload_id: str, tail_lines: int = 100) -> str:
        return await self.inner.logs(workload_id, tail_lines)

    async def list(self) -> builtins.list[WorkloadStatus]:
        if self.broken:
            raise OSError("Cannot connect to the Docker daemon")
        return await self.inner.list()
