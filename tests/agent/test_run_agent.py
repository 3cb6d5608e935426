"""``run_agent`` end to end: real HTTP to a fake server, the real process runtime, a restart.

The fake server asks for a heartbeat every 50 ms, so these tests poll (with a deadline) for what
the server has seen rather than wait a fixed time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from gpuyard.agent.backoff import Backoff
from gpuyard.agent.gpus import GpuProbeResult
from gpuyard.agent.main import AgentOptions, run_agent
from gpuyard.agent.runtimes.sandbox import open_sandbox
from gpuyard.agent.state import StateError
from gpuyard.agent.transport import AgentRejected, ServerUnavailable
from gpuyard.core.hosts import PortRange
from gpuyard.core.workload import WorkloadState, WorkloadStatus

from .conftest import kill_everything
from .fake_server import FakeServer, agent_api, serve
from .supervisor_kit import live_wrappers, spec

T = TypeVar("T")


class NoGpus:
    def probe(self) -> GpuProbeResult:
        return GpuProbeResult()


@pytest.fixture
async def agent_dir(tmp_path: Path) -> AsyncIterator[Path]:
    path = tmp_path / "agent"
    try:
        yield path
    finally:
        kill_everything(path)


async def eventually(probe: Callable[[], T | None], timeout_s: float = 10.0) -> T:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while (value := probe()) is None:
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)
    return value


def reported(server: FakeServer, workload_id: str, state: WorkloadState) -> WorkloadStatus | None:
    status = server.statuses.get(workload_id)
    return status if status is not None and status.state is state else None


async def test_joins_runs_stops_and_readopts_after_a_restart(
    agent_dir: Path, port_range: PortRange
) -> None:
    server = FakeServer(interval_s=0.05)
    server.assign(spec("wl_e2e"))
    async with serve(agent_api(server)) as url:
        first = AgentOptions(
            server_url=url,
            join_token="gyj_test",
            gpus="RTX 4090:2",
            state_dir=agent_dir,
            runtime="process",
            port_range=port_range,
            address="127.0.0.1",
            name="laptop",
        )
        stop = asyncio.Event()
        agent = asyncio.create_task(run_agent(first, stop, probe=NoGpus()))
        running = await eventually(lambda: reported(server, "wl_e2e", WorkloadState.RUNNING))
        stop.set()
        await asyncio.wait_for(agent, 10)

        joined = server.registrations[0]
        assert joined.name == "laptop"
        assert [(g.name, g.logical) for g in joined.facts.gpus] == [("RTX 4090", True)] * 2
        assert joined.facts.address == "127.0.0.1" and joined.facts.port_range == port_range
        assert joined.facts.cpu_cores >= 1 and joined.facts.ram_mb > 0
        expected = open_sandbox(first.sandbox)[1]  # what this host can do, reported as it is
        assert joined.facts.isolation == expected and expected.runtime == "process"
        assert len(live_wrappers(agent_dir, "wl_e2e")) == 1  # left running by the stop

        # Restarted with neither --server nor --token: both come from the state dir.
        beats = len(server.heartbeats)
        second = AgentOptions(
            gpus="RTX 4090:2", state_dir=agent_dir, runtime="process", port_range=port_range
        )
        stop = asyncio.Event()
        agent = asyncio.create_task(run_agent(second, stop, probe=NoGpus()))
        await eventually(lambda: len(server.heartbeats) > beats + 2 or None)
        stop.set()
        await asyncio.wait_for(agent, 10)

    assert len(server.registrations) == 1
    again = server.statuses["wl_e2e"]
    assert again.state is WorkloadState.RUNNING and again.pid == running.pid
    assert [p.pid for p in live_wrappers(agent_dir, "wl_e2e")] == [running.pid]
    assert server.heartbeats[-1].facts.gpus == joined.facts.gpus  # same logical uuids


async def test_a_first_start_fails_fast_unless_told_to_wait(
    agent_dir: Path, port_range: PortRange
) -> None:
    options = AgentOptions(
        server_url="http://127.0.0.1:9",
        join_token="gyj_test",
        state_dir=agent_dir,
        runtime="process",
        port_range=port_range,
    )
    with pytest.raises(ServerUnavailable):
        await run_agent(options, asyncio.Event(), probe=NoGpus())

    server = FakeServer(tokens={"gyj_other"})
    async with serve(agent_api(server)) as url:
        refused = AgentOptions(
            server_url=url, join_token="gyj_test", state_dir=agent_dir, runtime="process"
        )
        with pytest.raises(AgentRejected, match="invalid, used or revoked"):
            await run_agent(refused, asyncio.Event(), probe=NoGpus())


async def test_waiting_for_the_server_retries_the_first_registration(
    agent_dir: Path, port_range: PortRange
) -> None:
    server = FakeServer(interval_s=0.05, down=True)
    async with serve(agent_api(server)) as url:
        options = AgentOptions(
            server_url=url,
            join_token="gyj_test",
            state_dir=agent_dir,
            runtime="process",
            port_range=port_range,
            wait_for_server=True,
        )
        stop = asyncio.Event()
        quick = Backoff(initial_s=0.01, max_s=0.05)
        agent = asyncio.create_task(run_agent(options, stop, probe=NoGpus(), backoff=quick))
        await eventually(lambda: server.refused >= 3 or None)
        assert not agent.done()
        server.down = False
        await eventually(lambda: server.heartbeats or None)
        stop.set()
        await asyncio.wait_for(agent, 10)
    assert len(server.registrations) == 1


async def test_no_server_and_no_registration_is_a_clear_error(agent_dir: Path) -> None:
    with pytest.raises(StateError, match="--server is needed"):
        await run_agent(AgentOptions(state_dir=agent_dir), asyncio.Event(), probe=NoGpus())
