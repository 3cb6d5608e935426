"""A tenant's instance tries to become the operator, as a hostile tenant did on ``gpuyard up``.

The real server (SQLite and Postgres) and the real agent with the real sandboxed process runtime
run in this test process; a process started with the operator key in its environment stands for
the server as ``gpuyard up`` ran it (a variable set later is not in ``/proc/PID/environ``). The
attacker's command tries, in turn, the processes' environments, the database, the agent's
credential, another org's workload files and that org's replica port, and the server's own
port; every attempt must fail, while each target is shown to be real from outside the sandbox.
Then a host that cannot isolate: it runs the operator's own workload, and a tenant's only once
the operator trusts it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from gpuyard.agent.runtimes.process import ProcessRuntime
from gpuyard.agent.runtimes.process_state import WorkloadDir
from gpuyard.agent.runtimes.sandbox import SandboxConfig, SandboxMode
from gpuyard.agent.state import AgentState
from gpuyard.agent.transport import HttpTransport
from gpuyard.core.hosts import PortRange
from gpuyard.server.controllers.clusters import ClusterController
from tests.harness import Api, Tenant

from .conftest import kill_everything
from .hostile_kit import (
    ATTACK,
    VICTIM_SECRET,
    Healthy,
    blocked_everywhere,
    database_target,
    join_shared_host,
    rent,
)
from .polling import ended, wait_for
from .sandboxing import PY, python_command, require_isolation, wait_listening


@pytest.fixture
async def transport(api: Api) -> AsyncIterator[HttpTransport]:
    async with HttpTransport(api.base_url) as http:
        yield http


async def test_a_hostile_tenant_reaches_nothing_on_a_shared_host(
    api: Api,
    db_url: str,
    transport: HttpTransport,
    runtime: ProcessRuntime,
    state_dir: Path,
    port_range: PortRange,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    require_isolation(runtime)
    monkeypatch.setenv("GPUYARD_ADMIN_KEY", api.operator_key)
    keeper = await asyncio.create_subprocess_exec(  # the server as `gpuyard up` ran it
        "sleep", "300", env={"GPUYARD_ADMIN_KEY": api.operator_key, "PATH": "/usr/bin:/bin"}
    )
    try:
        await _attack(api, db_url, transport, runtime, state_dir, port_range)
    finally:
        keeper.kill()
        await keeper.wait()


async def _attack(
    api: Api,
    db_url: str,
    transport: HttpTransport,
    runtime: ProcessRuntime,
    state_dir: Path,
    port_range: PortRange,
) -> None:
    sup = await join_shared_host(api, transport, runtime, state_dir, port_range)
    victim, attacker = await api.tenant("Victim"), await api.tenant("Mallory")

    serve = f'echo {VICTIM_SECRET} > secret.txt; exec {PY} -m http.server "$PORT"'
    body = {"name": "private", "gpu_type": "rtx-4090", "replicas": 1, "command": serve}
    body["container"] = "python"
    assert (await victim.client.post("/v1/clusters", json=body)).status_code == 201
    clusters = ClusterController(
        sessions=api.ctx.sessions, clock=api.clock, owner="t", prober=Healthy()
    )
    await clusters.step()
    [replica] = (await sup.step()).actions
    replica_port = (await runtime.inspect(replica)).host_port  # type: ignore[union-attr]
    assert replica_port is not None
    await wait_listening("127.0.0.1", replica_port)
    async with httpx.AsyncClient() as outside:  # from outside the sandbox the target is real
        r = await outside.get(f"http://127.0.0.1:{replica_port}/secret.txt")
        assert r.text.strip() == VICTIM_SECRET
    credential = AgentState(state_dir).load_registration()
    assert credential is not None

    args = [
        database_target(db_url),
        str(state_dir / "host.json"),
        str(WorkloadDir(state_dir, replica).home / "secret.txt"),
        str(replica_port),
        str(urlsplit(api.base_url).port),
    ]
    status, vm_url = await rent(attacker, python_command(ATTACK, *args))
    assert status == 201
    [instance] = (await sup.step()).actions
    ended_status = await wait_for(lambda: runtime.inspect(instance), ended, timeout_s=30)
    await sup.step()
    logs = (await attacker.client.get(f"{vm_url}/logs", params={"tail": 100})).text
    assert ended_status.exit_code == 0, logs

    blocked_everywhere(logs)
    for secret in (api.operator_key, credential.credential, VICTIM_SECRET):
        assert secret not in logs


async def test_a_host_that_cannot_isolate_runs_the_operators_workload_and_tenants_once_trusted(
    api: Api, transport: HttpTransport, state_dir: Path, port_range: PortRange
) -> None:
    runtime = ProcessRuntime(state_dir, port_range, sandbox=SandboxConfig(mode=SandboxMode.OFF))
    try:
        assert not runtime.isolation.isolates
        sup = await join_shared_host(api, transport, runtime, state_dir, port_range)
        tenant = await api.tenant()
        operator = Tenant(org_id=api.operator_org, key=api.operator_key, client=api.client)
        assert (await rent(tenant, "echo tenant"))[0] == 404  # no offer for them here

        status, _ = await rent(operator, "echo operator; exec sleep 60")
        assert status == 201
        [mine] = (await sup.step()).actions
        assert (await runtime.inspect(mine)).state.value == "running"  # type: ignore[union-attr]

        r = await api.client.patch(f"/v1/admin/hosts/{sup.host_id}", json={"trusted": True})
        assert r.status_code == 200, r.text
        status, _ = await rent(tenant, "echo tenant")
        assert status == 201
        [theirs] = (await sup.step()).actions
        done = await wait_for(lambda: runtime.inspect(theirs), ended)
        assert done.exit_code == 0 and "tenant" in (done.log_tail or "")
    finally:
        kill_everything(state_dir)
