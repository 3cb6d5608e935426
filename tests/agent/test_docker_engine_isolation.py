"""What a container of the docker runtime gets of its host, on a real private ``dockerd``; how the
runtime is chosen from ``DOCKER_HOST``; the host's network where an engine makes no bridge."""

from __future__ import annotations

import asyncio
import re
import socket
from pathlib import Path

import pytest

from gpuyard.agent.runtimes.choice import choose_runtime
from gpuyard.agent.runtimes.docker import DockerRuntime, probe_networking
from gpuyard.agent.runtimes.docker_spec import Networking, ResourceShare
from gpuyard.agent.runtimes.process import ProcessRuntime
from gpuyard.core.errors import Unavailable
from gpuyard.core.hosts import PortRange
from gpuyard.core.workload import WorkloadState
from tests.docker_engine import PrivateEngine

from .docker_kit import SERVE, busybox, engine_runtime, eventually, http_text
from .docker_kit import inspect_container as inspect
from .polling import ended, wait_for

pytestmark = pytest.mark.docker

LOOK_AROUND = r"""
pids=$(ls /proc | grep -c '^[0-9][0-9]*$')
mem=$(cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes)
cpu=$(cat /sys/fs/cgroup/cpu.max 2>/dev/null || cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us)
model=$(cat "$MODELS/weights.txt")
if touch "$MODELS/planted" 2>/dev/null; then wrote=yes; else wrote=no; fi
hidden=$(ls -A "$MODELS/private" | wc -l)
if [ -e "$STATE" ]; then state=visible; else state=absent; fi
if nc -z -w 2 127.0.0.1 "$HOST_PORT" 2>/dev/null; then loopback=open; else loopback=closed; fi
init=$(cat /proc/1/comm)
echo "SEEN pids=\"$pids\""
echo "SEEN init=\"$init\""
echo "SEEN mem=\"$mem\""
echo "SEEN cpu=\"$cpu\""
echo "SEEN model=\"$model\""
echo "SEEN wrote=\"$wrote\""
echo "SEEN hidden=\"$hidden\""
echo "SEEN state=\"$state\""
echo "SEEN loopback=\"$loopback\""
"""


@pytest.fixture
def models(tmp_path: Path, state_dir: Path) -> Path:
    """Model files for containers to read, a private part of them, and an agent's state."""
    models = tmp_path / "models"
    (models / "private").mkdir(parents=True)
    (models / "weights.txt").write_text("w1")
    (models / "private" / "key").write_text("secret")
    state_dir.mkdir(parents=True)
    (state_dir / "host.json").write_text("{}")
    return models


async def test_a_container_gets_its_share_and_nothing_else_of_the_host(
    docker_engine: PrivateEngine, state_dir: Path, port_range: PortRange, models: Path
) -> None:
    with socket.socket() as listener:  # a loopback-only service of the host's
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        env = {
            "MODELS": str(models),
            "STATE": str(state_dir),
            "HOST_PORT": str(listener.getsockname()[1]),
        }
        share = ResourceShare(cpu_cores=8, ram_mb=16384, gpus=4)
        async with engine_runtime(
            docker_engine,
            state_dir,
            port_range,
            read_only=(str(models),),
            hidden=(str(models / "private"),),
            share=share,
        ) as runtime:
            spec = busybox(
                "wl_look",
                LOOK_AROUND,
                env=env,
                gpu_indices=[0],
                gpu_uuids=["GPU-a"],
                labels={"gpuyard.org": "org_a"},
            )
            await runtime.start(spec)
            done = await wait_for(lambda: runtime.inspect("wl_look"), ended, timeout_s=30)
            assert done.exit_code == 0, done.log_tail
            seen = dict(re.findall(r'^SEEN (\w+)="(.*)"$', done.log_tail or "", re.MULTILINE))
            host = inspect(docker_engine, done.container_id)["HostConfig"]
    # Its own PID namespace: docker-init, sh, ls and grep.
    assert seen["init"] == "docker-init" and int(seen["pids"]) <= 5
    assert seen["mem"] == str(4096 * 1024 * 1024)  # a quarter of the host: one GPU of four
    assert seen["cpu"] in ("200000 100000", "200000")  # two CPUs (cgroup v2 or v1)
    assert (seen["model"], seen["wrote"], seen["hidden"]) == ("w1", "no", "0")
    assert (seen["state"], seen["loopback"]) == ("absent", "closed")
    assert host["Privileged"] is False and host["CapAdd"] in (None, [])
    assert host["PidMode"] in ("", "private") and host["IpcMode"] in ("private", "shareable")
    assert host["NetworkMode"] == "gpuyard-org-org_a" and host["UsernsMode"] == ""
    assert host["NanoCpus"] == 2 * 10**9 and host["Memory"] == 4096 * 1024 * 1024
    assert [(m["Type"], m["Target"], m.get("ReadOnly")) for m in host["Mounts"]] == [
        ("bind", str(models), True),
        ("tmpfs", str(models / "private"), True),
    ]


async def test_an_engine_without_bridges_runs_containers_on_the_hosts_network(
    docker_engine: PrivateEngine, state_dir: Path, port_range: PortRange
) -> None:
    """The workload listens on the host port itself (``PORT``); such a host does not isolate."""
    async with engine_runtime(
        docker_engine, state_dir, port_range, networking=Networking.HOST
    ) as runtime:
        assert not runtime.isolation.isolates and "host's network" in (
            runtime.isolation.reason or ""
        )
        spec = busybox("wl_hostnet", SERVE, port=8000, env={"GREETING": "hey"}, kind="replica")
        status = await runtime.start(spec)
        assert status.state is WorkloadState.RUNNING and status.host_port in port_range
        assert await eventually(lambda: http_text(status.host_port or 0)) == "hey from wl_hostnet\n"
        attrs = inspect(docker_engine, status.container_id)
        assert attrs["HostConfig"]["NetworkMode"] == "host"
        assert f"PORT={status.host_port}" in attrs["Config"]["Env"]


async def test_docker_host_names_the_engine_the_runtime_uses(
    docker_engine: PrivateEngine,
    state_dir: Path,
    port_range: PortRange,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = docker_engine.client()
    try:
        assert await asyncio.to_thread(probe_networking, client) is Networking.BRIDGE
    finally:
        client.close()
    monkeypatch.setenv("DOCKER_HOST", docker_engine.url)
    for name in ("docker", "auto"):
        runtime = await choose_runtime(name, state_dir, port_range=port_range)
        assert isinstance(runtime, DockerRuntime) and runtime.isolation.isolates
        assert runtime.networking is Networking.BRIDGE
    monkeypatch.setenv("DOCKER_HOST", f"unix://{docker_engine.dir}/no-such.sock")
    with pytest.raises(Unavailable, match="no Docker engine answers"):
        await choose_runtime("docker", state_dir, port_range=port_range)
    fallback = await choose_runtime("auto", state_dir, port_range=port_range)
    assert isinstance(fallback, ProcessRuntime)
