"""The real agent against the real server: join, rent, run, stop, start, destroy, exit at once.

The supervisor is driven step by step over real HTTP, with each real runtime: the process runtime,
and the docker runtime on the session's private engine (skipped where none can start); each test
runs on SQLite and on Postgres (``api``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gpuyard.agent.runtimes.base import Runtime
from gpuyard.agent.runtimes.process import ProcessRuntime
from gpuyard.agent.supervisor import Supervisor
from gpuyard.agent.transport import AgentRejected, HttpTransport
from gpuyard.core.hosts import PortRange
from gpuyard.core.workload import WorkloadState
from tests.docker_engine import BUSYBOX_IMAGE, PrivateEngine
from tests.harness import Api, Tenant

from .conftest import kill_everything
from .docker_kit import engine_runtime
from .polling import ended, wait_for
from .supervisor_kit import facts, joining_supervisor, live_wrappers


@dataclass
class Rig:
    """A runtime and the image its instances run (none for the process runtime)."""

    runtime: Runtime
    image: str | None
    state_dir: Path

    async def runs_nothing_of(self, workload_id: str) -> bool:
        if isinstance(self.runtime, ProcessRuntime):
            return live_wrappers(self.state_dir, workload_id) == []
        status = await self.runtime.inspect(workload_id)
        return status is None or not status.state.is_active


@pytest.fixture(params=["process", "docker"])
async def rig(
    request: pytest.FixtureRequest, state_dir: Path, port_range: PortRange
) -> AsyncIterator[Rig]:
    if request.param == "process":
        runtime = ProcessRuntime(state_dir, port_range)
        try:
            yield Rig(runtime, None, state_dir)
        finally:
            kill_everything(state_dir)
        return
    engine: PrivateEngine = request.getfixturevalue("docker_engine")
    async with engine_runtime(engine, state_dir, port_range) as docker_runtime:
        yield Rig(docker_runtime, BUSYBOX_IMAGE, state_dir)


@pytest.fixture
async def transport(api: Api) -> AsyncIterator[HttpTransport]:
    async with HttpTransport(api.base_url) as http:
        yield http


async def join(
    api: Api, transport: HttpTransport, runtime: Runtime, state_dir: Path, ports: PortRange
) -> Supervisor:
    """A supervisor joined to the server, reporting how its runtime isolates; a host that cannot
    (no bubblewrap here) is marked trusted, so the tenants of these tests may still rent it."""
    sup = await joining_supervisor(
        api, transport, runtime, state_dir, facts(ports, runtime.isolation)
    )
    await sup.register()
    if not runtime.isolation.isolates:
        r = await api.client.patch(f"/v1/admin/hosts/{sup.host_id}", json={"trusted": True})
        assert r.status_code == 200, r.text
    return sup


async def rent(t: Tenant, command: str, image: str | None = None) -> tuple[str, dict[str, Any]]:
    offers = (await t.client.get(f"/v1/orgs/{t.org_id}/offers")).json()["data"]
    body = {"offer_id": offers[0]["id"], "command": command}
    if image is not None:
        body["image"] = image
    r = await t.client.post(f"/v1/orgs/{t.org_id}/vms", json=body)
    assert r.status_code == 201, r.text
    url = f"/v1/orgs/{t.org_id}/vms/{r.json()['id']}"
    return url, r.json()


async def vm(t: Tenant, url: str) -> dict[str, Any]:
    got: dict[str, Any] = (await t.client.get(url)).json()
    return got


async def test_rent_run_stop_start_destroy(
    api: Api,
    transport: HttpTransport,
    rig: Rig,
    state_dir: Path,
    port_range: PortRange,
) -> None:
    runtime = rig.runtime
    sup = await join(api, transport, runtime, state_dir, port_range)
    await sup.step()
    hosts = (await api.client.get("/v1/admin/hosts")).json()["data"]
    assert [h["id"] for h in hosts] == [sup.host_id]

    t = await api.tenant()
    url, _ = await rent(t, "exec sleep 600", rig.image)
    started = await sup.step()
    [workload_id] = started.actions
    await sup.step()
    running = await vm(t, url)
    assert running["actual_status"] == "running"
    first_pid = (await runtime.inspect(workload_id)).pid  # type: ignore[union-attr]

    assert (await t.client.post(f"{url}/stop")).status_code == 200
    await sup.step()
    await sup.step()
    assert (await vm(t, url))["actual_status"] == "stopped"
    assert await rig.runs_nothing_of(workload_id)

    assert (await t.client.post(f"{url}/start")).status_code == 200
    await sup.step()
    await sup.step()
    assert (await vm(t, url))["actual_status"] == "running"
    again = await runtime.inspect(workload_id)
    assert again is not None and again.pid != first_pid

    assert (await t.client.delete(url)).status_code == 200
    await sup.step()  # stops and removes it
    await sup.step()  # reports it gone; the server frees its GPUs
    assert await runtime.inspect(workload_id) is None
    assert await rig.runs_nothing_of(workload_id)
    assert len((await t.client.get(f"/v1/orgs/{t.org_id}/offers")).json()["data"]) >= 1


async def test_a_command_that_exits_at_once_reads_exited_with_its_logs(
    api: Api,
    transport: HttpTransport,
    rig: Rig,
    state_dir: Path,
    port_range: PortRange,
) -> None:
    runtime = rig.runtime
    sup = await join(api, transport, runtime, state_dir, port_range)
    await sup.step()
    t = await api.tenant()
    # A moment between the two: Docker keeps stdout and stderr as two streams and may merge lines
    # written to both at once out of order.
    command = "echo 'loading model'; sleep 0.2; echo 'boom: bad config' >&2; exit 3"
    url, _ = await rent(t, command, rig.image)
    [workload_id] = (await sup.step()).actions
    await wait_for(lambda: runtime.inspect(workload_id), ended)
    for _ in range(3):
        assert (await sup.step()).actions == {}

    got = await vm(t, url)
    assert got["actual_status"] == "exited" and got["exit_code"] == 3
    logs = await t.client.get(f"{url}/logs", params={"tail": 1})
    assert logs.text == "boom: bad config\n"
    status = await runtime.inspect(workload_id)
    assert status is not None and status.state is WorkloadState.EXITED


async def test_a_removed_host_is_refused(
    api: Api,
    transport: HttpTransport,
    rig: Rig,
    state_dir: Path,
    port_range: PortRange,
) -> None:
    runtime = rig.runtime
    sup = await join(api, transport, runtime, state_dir, port_range)
    await sup.step()
    r = await api.client.delete(f"/v1/admin/hosts/{sup.host_id}")
    if r.status_code == 405:
        pytest.skip("the server has no host removal yet")
    assert r.status_code in (200, 204), r.text

    with pytest.raises(AgentRejected) as caught:
        await sup.step()
    assert caught.value.status in (401, 403)
