"""The docker runtime up to the SDK seam, against an in-memory engine."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gpuyard.agent.runtimes.docker import DockerRuntime
from gpuyard.agent.runtimes.docker_client import docker_available
from gpuyard.agent.runtimes.docker_spec import (
    LABEL_HOST_PORT,
    LABEL_SPEC_HASH,
    LABEL_WORKLOAD,
    ContainerPlan,
    Networking,
    ResourceShare,
    container_command,
    create_options,
    parse_docker_time,
)
from gpuyard.core.errors import NotFound
from gpuyard.core.hosts import PortRange
from gpuyard.core.workload import WorkloadSpec, WorkloadState

from .fake_docker import FakeDockerClient, FakeEngine

IMAGE = "vllm/vllm-openai:latest"
GPU_UUIDS = ["GPU-1111", "GPU-2222"]


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine(registry={IMAGE}, gpus=set(GPU_UUIDS))


@pytest.fixture
def client(engine: FakeEngine) -> FakeDockerClient:
    return FakeDockerClient(engine)


@pytest.fixture
def runtime(client: FakeDockerClient, port_range: PortRange) -> DockerRuntime:
    return DockerRuntime(client, port_range=port_range)


def vllm(**fields: object) -> WorkloadSpec:
    base = {
        "id": "wl_vllm",
        "image": IMAGE,
        "args": ["--model", "m"],
        "port": 8000,
        "env": {"HF_TOKEN": "t"},
        "gpu_indices": [0, 1],
        "gpu_uuids": GPU_UUIDS,
        "labels": {"team": "a"},
    }
    return WorkloadSpec.model_validate({**base, **fields})


async def test_start_pulls_and_runs_a_labelled_container(
    runtime: DockerRuntime, client: FakeDockerClient, engine: FakeEngine, port_range: PortRange
) -> None:
    spec = vllm()
    status = await runtime.start(spec)
    assert client.images.pulls == [IMAGE]
    [container] = engine.containers.values()
    assert status.state is WorkloadState.RUNNING
    assert status.container_id == container.id and status.pid == container.pid
    assert status.host_port in port_range and status.spec_hash == spec.spec_hash()
    assert status.started_at == datetime(2026, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)
    assert container.name == "gpuyard-wl_vllm"
    assert container.entrypoint is None and container.command == ["--model", "m"]
    assert container.ports == {"8000/tcp": ("0.0.0.0", status.host_port)}
    assert container.environment == {
        "HF_TOKEN": "t",
        "GPUYARD_WORKLOAD_ID": "wl_vllm",
        "PORT": "8000",
        "NVIDIA_VISIBLE_DEVICES": "GPU-1111,GPU-2222",
    }
    assert container.labels == {
        "team": "a",
        LABEL_WORKLOAD: "wl_vllm",
        LABEL_SPEC_HASH: spec.spec_hash(),
        LABEL_HOST_PORT: str(status.host_port),
        "gpuyard.kind": "instance",
    }
    [request] = container.device_requests
    assert request["DeviceIDs"] == GPU_UUIDS and request["Capabilities"] == [["gpu"]]


async def test_start_twice_and_a_restarted_agent_never_duplicate(
    runtime: DockerRuntime, engine: FakeEngine, port_range: PortRange
) -> None:
    first = await runtime.start(vllm())
    assert (await runtime.start(vllm())).container_id == first.container_id
    agent2 = DockerRuntime(FakeDockerClient(engine), port_range=port_range)
    listed = await agent2.list()
    assert [(s.id, s.state, s.container_id, s.host_port) for s in listed] == [
        ("wl_vllm", WorkloadState.RUNNING, first.container_id, first.host_port)
    ]
    assert (await agent2.start(vllm())).container_id == first.container_id
    assert len(engine.containers) == 1


async def test_exit_reports_code_and_log_tail(runtime: DockerRuntime, engine: FakeEngine) -> None:
    await runtime.start(vllm())
    [container] = engine.containers.values()
    container.write("loading\nCUDA error: out of memory\n")
    container.finish(3)
    status = await runtime.inspect("wl_vllm")
    assert status is not None and status.state is WorkloadState.EXITED
    assert status.exit_code == 3 and status.message == "exited with code 3"
    assert status.log_tail == "loading\nCUDA error: out of memory\n"
    assert status.finished_at == datetime(2026, 1, 1, 0, 1, 0, 500000, tzinfo=UTC)
    assert await runtime.logs("wl_vllm", tail_lines=1) == "CUDA error: out of memory\n"


async def test_start_after_exit_starts_the_same_container_unless_the_spec_changed(
    runtime: DockerRuntime, client: FakeDockerClient, engine: FakeEngine
) -> None:
    """The same spec starts its container again (its files kept, as a rented instance's disk
    survives a stop); another spec gets a new container."""
    first = await runtime.start(vllm())
    engine.containers[first.container_id or ""].finish(1)
    again = await runtime.start(vllm())
    assert again.state is WorkloadState.RUNNING and again.container_id == first.container_id
    assert engine.containers[first.container_id or ""].starts == 2
    engine.containers[first.container_id or ""].finish(1)
    changed = await runtime.start(vllm(env={"HF_TOKEN": "new"}))
    assert changed.state is WorkloadState.RUNNING and changed.container_id != first.container_id
    assert list(engine.containers) == [changed.container_id]
    assert client.images.pulls == [IMAGE]  # pulled once; the engine has it now


async def test_stop_uses_the_grace_period_then_remove(
    runtime: DockerRuntime, engine: FakeEngine
) -> None:
    await runtime.start(vllm())
    [container] = engine.containers.values()
    container.handles_sigterm = False
    status = await runtime.stop("wl_vllm", grace_s=2.5)
    assert container.stop_timeouts == [3]
    assert status.state is WorkloadState.STOPPED and status.exit_code == 137
    await runtime.remove("wl_vllm")
    assert engine.containers == {} and await runtime.inspect("wl_vllm") is None
    await runtime.remove("wl_vllm")
    with pytest.raises(NotFound):
        await runtime.stop("wl_vllm")
    with pytest.raises(NotFound):
        await runtime.logs("wl_vllm")


async def test_a_restarted_agent_still_knows_what_it_stopped(
    engine: FakeEngine, port_range: PortRange, tmp_path: Path
) -> None:
    """Stopped on request reads ``stopped`` (started again when wanted), not ``exited`` (never
    restarted), also for the next agent process on the same state dir."""
    first = DockerRuntime(FakeDockerClient(engine), port_range=port_range, state_dir=tmp_path)
    await first.start(vllm())
    await first.stop("wl_vllm", grace_s=1)
    await first.start(vllm(id="wl_other"))
    [other] = [c for c in engine.containers.values() if c.name == "gpuyard-wl_other"]
    other.finish(0)

    second = DockerRuntime(FakeDockerClient(engine), port_range=port_range, state_dir=tmp_path)
    states = {s.id: s.state for s in await second.list()}
    assert states == {"wl_vllm": WorkloadState.STOPPED, "wl_other": WorkloadState.EXITED}
    assert (await second.start(vllm())).state is WorkloadState.RUNNING
    third = DockerRuntime(FakeDockerClient(engine), port_range=port_range, state_dir=tmp_path)
    assert (await third.inspect("wl_vllm")).state is WorkloadState.RUNNING  # type: ignore[union-attr]
    (tmp_path / "docker-stopped.json").write_text("{not json")
    damaged = DockerRuntime(FakeDockerClient(engine), port_range=port_range, state_dir=tmp_path)
    assert (await damaged.inspect("wl_vllm")).state is WorkloadState.RUNNING  # type: ignore[union-attr]


async def test_pull_failure_is_a_failed_status(runtime: DockerRuntime) -> None:
    status = await runtime.start(vllm(image="nobody/nothing:1"))
    assert status.state is WorkloadState.FAILED
    assert "pull access denied for nobody/nothing" in (status.message or "")
    assert await runtime.inspect("wl_vllm") == status
    assert await runtime.list() == [status]
    assert await runtime.stop("wl_vllm") == status
    await runtime.remove("wl_vllm")
    assert await runtime.inspect("wl_vllm") is None


async def test_no_image_is_a_failed_status(runtime: DockerRuntime) -> None:
    status = await runtime.start(WorkloadSpec(id="wl_x", command="echo hi"))
    assert status.state is WorkloadState.FAILED
    assert status.message == "the docker runtime needs an image"


async def test_gpus_the_engine_lacks_fail_unless_logical(port_range: PortRange) -> None:
    engine = FakeEngine(registry={IMAGE})
    status = await DockerRuntime(FakeDockerClient(engine), port_range=port_range).start(vllm())
    assert status.state is WorkloadState.FAILED
    assert "could not select device driver" in (status.message or "")
    logical = DockerRuntime(FakeDockerClient(engine), port_range=port_range, use_gpus=False)
    status = await logical.start(vllm())
    assert status.state is WorkloadState.RUNNING
    [container] = engine.containers.values()
    assert container.device_requests == []


async def test_published_ports_do_not_collide(runtime: DockerRuntime) -> None:
    a = await runtime.start(vllm(id="wl_a"))
    b = await runtime.start(vllm(id="wl_b", gpu_uuids=[], gpu_indices=[]))
    assert a.host_port != b.host_port


def test_container_command_rules() -> None:
    assert container_command(vllm()) == (None, ["--model", "m"])
    assert container_command(vllm(args=[])) == (None, None)
    assert container_command(vllm(command="serve $1")) == (
        ["/bin/sh", "-c"],
        ["serve $1", "gpuyard", "--model", "m"],
    )
    assert container_command(vllm(onstart="pip install x", args=["python", "a.py"])) == (
        ["/bin/sh", "-c"],
        ['pip install x\nexec "$@"', "gpuyard", "python", "a.py"],
    )
    assert container_command(vllm(onstart="bash /start.sh", args=[])) == (
        ["/bin/sh", "-c"],
        ["bash /start.sh", "gpuyard"],
    )


def test_parse_docker_time() -> None:
    assert parse_docker_time("0001-01-01T00:00:00Z") is None
    assert parse_docker_time("") is None and parse_docker_time(None) is None
    assert parse_docker_time("2026-03-04T05:06:07.123456789Z") == datetime(
        2026, 3, 4, 5, 6, 7, 123456, tzinfo=UTC
    )
    assert parse_docker_time("2026-03-04T05:06:07+02:00") == datetime(
        2026, 3, 4, 3, 6, 7, tzinfo=UTC
    )


def _engine_configured() -> bool:
    return bool(os.environ.get("DOCKER_HOST")) or Path("/var/run/docker.sock").exists()


async def test_docker_available() -> None:
    assert await docker_available(FakeDockerClient()) is True
    assert await docker_available(FakeDockerClient(up=False)) is False
    real = await docker_available(timeout_s=1.0)  # the engine the environment names, if any
    if not _engine_configured():
        assert real is False


async def test_a_container_that_cannot_start_again_is_made_anew(
    runtime: DockerRuntime, engine: FakeEngine
) -> None:
    """Its host port was taken while it was stopped: the engine refuses ``start``, so the
    runtime removes it and makes a new container on a free port."""
    first = await runtime.start(vllm())
    await runtime.stop("wl_vllm", grace_s=1)
    squatter = await runtime.start(vllm(id="wl_squat", gpu_uuids=[], gpu_indices=[]))
    engine.containers[squatter.container_id or ""].ports = {"8000/tcp": first.host_port}
    again = await runtime.start(vllm())
    assert again.state is WorkloadState.RUNNING and again.container_id != first.container_id
    assert again.host_port not in (first.host_port, squatter.host_port)
    assert first.container_id not in engine.containers


def test_limits_are_the_gpus_share_of_the_host() -> None:
    share = ResourceShare(cpu_cores=16, ram_mb=65536, gpus=4)
    assert share.limits(vllm()) == {  # two GPUs of four
        "nano_cpus": 8 * 10**9,
        "mem_limit": 32768 * 2**20,
        "memswap_limit": 32768 * 2**20,
    }
    assert share.limits(vllm(gpu_uuids=[], gpu_indices=[])) == {}
    assert ResourceShare(cpu_cores=16, ram_mb=65536, gpus=0).limits(vllm()) == {}


def test_create_options_on_the_hosts_network_and_with_mounts() -> None:
    plan = ContainerPlan(
        networking=Networking.HOST,
        listen_host="127.0.0.1",
        use_gpus=False,
        read_only=("/models",),
        hidden=("/models/private", "/elsewhere"),
    )
    options = create_options(vllm(), plan, host_port=40123, network=None)
    assert options["network_mode"] == "host" and "ports" not in options
    assert "network" not in options and options["environment"]["PORT"] == "40123"
    assert options["labels"][LABEL_HOST_PORT] == "40123"
    assert options["init"] is True and options["privileged"] is False
    assert "device_requests" not in options
    mounts = [(m["Type"], m["Target"], m["ReadOnly"]) for m in options["mounts"]]
    assert mounts == [("bind", "/models", True), ("tmpfs", "/models/private", True)]


async def test_an_orgs_network_is_made_although_a_longer_name_holds_its_own(
    runtime: DockerRuntime, client: FakeDockerClient, engine: FakeEngine
) -> None:
    """The engine's name filter matches parts of names: ``gpuyard-org-org_ab`` must not pass
    for ``gpuyard-org-org_a`` (the container would fail: network not found)."""
    client.networks.create("gpuyard-org-org_ab", driver="bridge")
    status = await runtime.start(vllm(labels={"gpuyard.org": "org_a"}))
    assert status.state is WorkloadState.RUNNING, status
    assert "gpuyard-org-org_a" in engine.networks
