"""The docker runtime against a real, private ``dockerd`` (one per test session)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gpuyard.core.errors import NotFound
from gpuyard.core.hosts import PortRange
from gpuyard.core.workload import WorkloadState
from tests.docker_engine import PrivateEngine

from .docker_kit import SERVE, busybox, engine_runtime, eventually, http_text, our_containers
from .docker_kit import inspect_container as inspect
from .polling import ended, wait_for

pytestmark = pytest.mark.docker

LOOP = "echo ready; while :; do sleep 0.1; done"


async def test_an_instance_serves_its_env_on_its_published_port(
    docker_engine: PrivateEngine, state_dir: Path, port_range: PortRange
) -> None:
    spec = busybox(
        "wl_web",
        SERVE,
        port=8000,
        env={"GREETING": "hello"},
        labels={"gpuyard.org": "org_a", "team": "x"},
    )
    async with engine_runtime(docker_engine, state_dir, port_range) as runtime:
        status = await runtime.start(spec)
        assert status.state is WorkloadState.RUNNING, status
        assert status.host_port in port_range and status.spec_hash == spec.spec_hash()
        assert await eventually(lambda: http_text(status.host_port or 0)) == "hello from wl_web\n"
        assert "serving on 8000" in await runtime.logs("wl_web")

        attrs = inspect(docker_engine, status.container_id)
        assert attrs["Name"] == "/gpuyard-wl_web"
        labels = attrs["Config"]["Labels"]
        assert {k: labels[k] for k in ("team", "gpuyard.workload_id", "gpuyard.kind")} == {
            "team": "x",
            "gpuyard.workload_id": "wl_web",
            "gpuyard.kind": "instance",
        }
        assert labels["gpuyard.host_port"] == str(status.host_port)
        assert {"GREETING=hello", "PORT=8000", "NVIDIA_VISIBLE_DEVICES=void"} <= set(
            attrs["Config"]["Env"]
        )
        host = attrs["HostConfig"]
        assert host["PortBindings"] == {
            "8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(status.host_port)}]
        }
        assert host["NetworkMode"] == "gpuyard-org-org_a"


async def test_logs_follow_a_running_container_and_its_exit_code_is_kept(
    docker_engine: PrivateEngine, state_dir: Path, port_range: PortRange
) -> None:
    async with engine_runtime(docker_engine, state_dir, port_range) as runtime:
        counting = 'for i in 1 2 3 4 5 6 7 8; do echo "line $i"; sleep 0.2; done; exit 3'
        await runtime.start(busybox("wl_count", counting, kind="replica"))
        early = await eventually(lambda: _running_with(runtime, "wl_count", "line 2"))
        assert "line 8" not in early  # read while it still runs
        done = await wait_for(lambda: runtime.inspect("wl_count"), ended)
        assert done.state is WorkloadState.EXITED and done.exit_code == 3
        assert done.message == "exited with code 3" and done.finished_at is not None
        assert done.log_tail == "".join(f"line {i}\n" for i in range(1, 9))
        assert await runtime.logs("wl_count", tail_lines=1) == "line 8\n"


async def _running_with(runtime: object, workload_id: str, text: str) -> str | None:
    status = await runtime.inspect(workload_id)  # type: ignore[attr-defined]
    if status is not None and status.state is WorkloadState.RUNNING and text in status.log_tail:
        return str(status.log_tail)
    return None


async def test_stop_asks_with_sigterm_then_kills_after_the_grace_period(
    docker_engine: PrivateEngine, state_dir: Path, port_range: PortRange
) -> None:
    async with engine_runtime(docker_engine, state_dir, port_range) as runtime:
        polite = f'trap "echo bye; exit 7" TERM; {LOOP}'
        stubborn = f'trap "" TERM; {LOOP}'
        for spec in (
            busybox("wl_polite", polite),
            busybox("wl_stubborn", stubborn),
            busybox("wl_plain", "echo ready; exec sleep 1000"),  # PID 2: init passes SIGTERM on
        ):
            await runtime.start(spec)
            await eventually(lambda s=spec.id: _running_with(runtime, s, "ready"))  # type: ignore[misc]
        loop = asyncio.get_running_loop()

        began = loop.time()
        status = await runtime.stop("wl_polite", grace_s=20)
        assert (status.state, status.exit_code) == (WorkloadState.STOPPED, 7)
        assert "bye" in (status.log_tail or "") and loop.time() - began < 10
        began = loop.time()
        status = await runtime.stop("wl_plain", grace_s=20)
        assert (status.state, status.exit_code) == (WorkloadState.STOPPED, 143)
        assert loop.time() - began < 10
        began = loop.time()
        status = await runtime.stop("wl_stubborn", grace_s=1)
        assert (status.state, status.exit_code) == (WorkloadState.STOPPED, 137)
        assert loop.time() - began >= 1


async def test_a_stopped_instance_starts_again_with_its_files_then_is_removed(
    docker_engine: PrivateEngine, state_dir: Path, port_range: PortRange
) -> None:
    keeps = (
        'if [ -f /data/mark ]; then echo "found the mark"; fi; '
        "mkdir -p /data && touch /data/mark; echo ready; exec sleep 1000"
    )
    spec = busybox("wl_disk", keeps, port=8000)
    async with engine_runtime(docker_engine, state_dir, port_range) as runtime:
        first = await runtime.start(spec)
        await eventually(lambda: _running_with(runtime, "wl_disk", "ready"))
        assert (await runtime.stop("wl_disk", grace_s=5)).state is WorkloadState.STOPPED
        async with engine_runtime(docker_engine, state_dir, port_range) as after_restart:
            stopped = await after_restart.inspect("wl_disk")
            assert stopped is not None and stopped.state is WorkloadState.STOPPED

            again = await runtime.start(spec)
            assert again.state is WorkloadState.RUNNING
            assert (again.container_id, again.host_port) == (first.container_id, first.host_port)
            await eventually(lambda: _running_with(runtime, "wl_disk", "found the mark"))

            await runtime.remove("wl_disk")
            assert await runtime.inspect("wl_disk") is None
            assert our_containers(docker_engine) == []
            await runtime.remove("wl_disk")  # a no-op now
            with pytest.raises(NotFound):
                await runtime.stop("wl_disk")
            with pytest.raises(NotFound):
                await runtime.logs("wl_disk")


async def test_a_restarted_agent_readopts_its_containers_and_never_duplicates(
    docker_engine: PrivateEngine, state_dir: Path, port_range: PortRange
) -> None:
    web = busybox("wl_web", SERVE, port=8000, env={"GREETING": "hi"}, kind="replica")
    job = busybox("wl_job", "exec sleep 1000")
    async with engine_runtime(docker_engine, state_dir, port_range) as first:
        started = {s.id: await first.start(s) for s in (web, job)}
        async with engine_runtime(docker_engine, state_dir, port_range) as second:
            listed = {s.id: s for s in await second.list()}
            assert set(listed) == {"wl_web", "wl_job"}
            for wid, status in started.items():
                assert listed[wid].state is WorkloadState.RUNNING
                assert (listed[wid].container_id, listed[wid].host_port) == (
                    status.container_id,
                    status.host_port,
                )
                assert (await second.start(web if wid == "wl_web" else job)).container_id == (
                    status.container_id
                )
            assert our_containers(docker_engine) == ["gpuyard-wl_job", "gpuyard-wl_web"]
            port = started["wl_web"].host_port or 0
            assert await eventually(lambda: http_text(port)) == "hi from wl_web\n"


async def test_gpu_device_requests_carry_exactly_the_assigned_gpus(
    docker_engine: PrivateEngine, state_dir: Path, port_range: PortRange
) -> None:
    """No GPU here: the engine refuses to start the container, and its create request, kept by
    the engine, shows what was asked for. The failure is the container's, so it lasts."""
    spec = busybox("wl_gpu", "exec sleep 1000", gpu_indices=[1, 3], gpu_uuids=["GPU-b", "GPU-d"])
    async with engine_runtime(docker_engine, state_dir, port_range, use_gpus=True) as runtime:
        status = await runtime.start(spec)
        assert status.state is WorkloadState.FAILED and status.exit_code is None
        assert 'could not select device driver "" with capabilities: [[gpu]]' in (
            status.message or ""
        )
        attrs = inspect(docker_engine, status.container_id)
        assert attrs["HostConfig"]["DeviceRequests"] == [
            {
                "Driver": "",
                "Count": 0,
                "DeviceIDs": ["GPU-b", "GPU-d"],
                "Capabilities": [["gpu"]],
                "Options": {},
            }
        ]
        assert "NVIDIA_VISIBLE_DEVICES=GPU-b,GPU-d" in attrs["Config"]["Env"]
        async with engine_runtime(docker_engine, state_dir, port_range) as restarted:
            assert (await restarted.inspect("wl_gpu")).state is WorkloadState.FAILED  # type: ignore[union-attr]
        logical = busybox("wl_cpu", "exec sleep 1000", gpu_indices=[0], gpu_uuids=["GPU-a"])
        async with engine_runtime(docker_engine, state_dir, port_range) as declared:
            status = await declared.start(logical)  # logical GPUs: no device request
            assert status.state is WorkloadState.RUNNING
            assert inspect(docker_engine, status.container_id)["HostConfig"]["DeviceRequests"] in (
                None,
                [],
            )


async def test_an_image_the_engine_lacks_fails_with_the_engines_words(
    docker_engine: PrivateEngine, state_dir: Path, port_range: PortRange
) -> None:
    async with engine_runtime(docker_engine, state_dir, port_range) as runtime:
        status = await runtime.start(busybox("wl_x", "true", image="gpuyard-test/absent:1"))
        assert status.state is WorkloadState.FAILED
        assert (status.message or "").startswith("cannot pull gpuyard-test/absent:1: docker: ")
        assert our_containers(docker_engine) == []
        assert await runtime.inspect("wl_x") == status
