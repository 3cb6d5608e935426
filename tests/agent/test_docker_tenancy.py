"""The docker runtime's tenancy rules, up to the SDK seam: what it asks the engine for."""

from __future__ import annotations

import pytest

from gpuyard.agent.runtimes.docker import DockerRuntime
from gpuyard.agent.runtimes.docker_spec import network_name
from gpuyard.core.hosts import PortRange
from gpuyard.core.workload import WorkloadSpec, WorkloadState

from .fake_docker import FakeDockerClient, FakeEngine

IMAGE = "vllm/vllm-openai:latest"
HOST_WIDE = {"network_mode", "pid_mode", "ipc_mode", "userns_mode", "uts_mode", "cap_add"}


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine(registry={IMAGE}, gpus={"GPU-1111", "GPU-2222", "GPU-3333"})


def spec(workload_id: str, org: str, gpus: list[str], **fields: object) -> WorkloadSpec:
    return WorkloadSpec.model_validate(
        {
            "id": workload_id,
            "image": IMAGE,
            "port": 8000,
            "gpu_indices": list(range(len(gpus))),
            "gpu_uuids": gpus,
            "labels": {"gpuyard.org": org},
            **fields,
        }
    )


async def test_each_org_gets_its_own_network_and_nothing_of_the_hosts(
    engine: FakeEngine, port_range: PortRange
) -> None:
    runtime = DockerRuntime(
        FakeDockerClient(engine), port_range=port_range, listen_host="127.0.0.1"
    )
    assert runtime.isolation.isolates and runtime.isolation.runtime == "docker"
    hostile = {"NVIDIA_VISIBLE_DEVICES": "all", "PORT": "1"}
    for s in (
        spec("wl_a1", "org_a", ["GPU-1111"], env=hostile),
        spec("wl_a2", "org_a", []),
        spec("wl_b1", "org_b", ["GPU-3333"]),
    ):
        assert (await runtime.start(s)).state is WorkloadState.RUNNING
    by_id = {c.labels["gpuyard.workload_id"]: c for c in engine.containers.values()}
    assert {wid: c.network for wid, c in by_id.items()} == {
        "wl_a1": "gpuyard-org-org_a",
        "wl_a2": "gpuyard-org-org_a",
        "wl_b1": "gpuyard-org-org_b",
    }
    assert engine.networks == {  # made once per org, a plain bridge
        "gpuyard-org-org_a": {"driver": "bridge", "labels": {"gpuyard.org": "org_a"}},
        "gpuyard-org-org_b": {"driver": "bridge", "labels": {"gpuyard.org": "org_b"}},
    }
    for container in by_id.values():
        asked = container.run_kwargs
        assert asked["privileged"] is False
        assert not HOST_WIDE & set(asked), asked
        [(address, _)] = container.ports.values()
        assert address == "127.0.0.1"  # published on the agent's listen address only
    a1 = by_id["wl_a1"]
    assert a1.environment["NVIDIA_VISIBLE_DEVICES"] == "GPU-1111"  # the spec cannot widen it
    assert a1.environment["PORT"] == "8000"
    assert [r["DeviceIDs"] for r in a1.device_requests] == [["GPU-1111"]]
    assert by_id["wl_a2"].environment["NVIDIA_VISIBLE_DEVICES"] == "void"
    assert by_id["wl_a2"].device_requests == []


async def test_a_restarted_agent_reuses_the_orgs_network(
    engine: FakeEngine, port_range: PortRange
) -> None:
    await DockerRuntime(FakeDockerClient(engine), port_range=port_range).start(
        spec("wl_a1", "org_a", [])
    )
    again = DockerRuntime(FakeDockerClient(engine), port_range=port_range)
    assert (await again.start(spec("wl_a2", "org_a", []))).state is WorkloadState.RUNNING
    assert list(engine.networks) == ["gpuyard-org-org_a"]


def test_a_spec_without_an_org_shares_one_network() -> None:
    assert network_name(WorkloadSpec(id="wl", image=IMAGE)) == "gpuyard-workloads"
