from pathlib import Path

import pytest

from gpuyard.agent.runtimes.choice import choose_runtime
from gpuyard.agent.runtimes.docker import DockerRuntime
from gpuyard.agent.runtimes.process import ProcessRuntime
from gpuyard.core.errors import Unavailable
from gpuyard.core.hosts import PortRange

from .fake_docker import FakeDockerClient


async def test_process_by_name(state_dir: Path, port_range: PortRange) -> None:
    rt = await choose_runtime("process", state_dir, port_range=port_range)
    assert isinstance(rt, ProcessRuntime) and rt.name == "process"


async def test_auto_picks_docker_when_an_engine_answers(
    state_dir: Path, port_range: PortRange
) -> None:
    up = FakeDockerClient()
    rt = await choose_runtime(None, state_dir, port_range=port_range, docker_client=up)
    assert isinstance(rt, DockerRuntime) and rt.name == "docker"
    down = FakeDockerClient(up=False)
    rt = await choose_runtime("auto", state_dir, port_range=port_range, docker_client=down)
    assert isinstance(rt, ProcessRuntime)


async def test_docker_by_name_needs_an_engine(state_dir: Path, port_range: PortRange) -> None:
    down = FakeDockerClient(up=False)
    with pytest.raises(Unavailable, match="no Docker engine answers") as info:
        await choose_runtime("docker", state_dir, port_range=port_range, docker_client=down)
    assert info.value.code == "docker_unavailable"


async def test_unknown_runtime_name(state_dir: Path, port_range: PortRange) -> None:
    with pytest.raises(ValueError, match="unknown runtime 'kubernetes'"):
        await choose_runtime("kubernetes", state_dir, port_range=port_range)
