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
import re
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from gpuyard.agent.runtimes.process import ProcessRuntime
from gpuyard.agent.runtimes.process_state import WorkloadDir
from gpuyard.agent.runtimes.sandbox import SandboxConfig, SandboxMode
from gpuyard.agent.state import AgentState
from gpuyard.agent.supervisor import Supervisor
from gpuyard.agent.transport import HttpTransport
from gpuyard.core.hosts import PortRange
from gpuyard.server.controllers.clusters import ClusterController, Probe, ProbeResult
from tests.harness import Api, Tenant

from .conftest import kill_everything
from .polling import ended, wait_for
from .sandboxing import PY, python_command, require_isolation, wait_listening
from .supervisor_kit import facts, joining_supervisor

VICTIM_SECRET = "victim-secret-4f1c"

ATTACK = r"""
import os, socket, sys
database, credential, victim_file, victim_port, server_port = sys.argv[1:6]

def probe(name, attempt):
    try:
        found = attempt()
    except Exception as exc:
        print(f"PROBE {name} BLOCKED {type(exc).__name__}", flush=True)
    else:
        print(f"PROBE {name} LEAKED {found!r}"[:400], flush=True)

def ancestors_environ():
    # The wrapper is given PATH alone; any more is the agent's (or the server's) environment.
    pid, readable = os.getppid(), []
    while pid > 0:
        try:
            block = open(f"/proc/{pid}/environ", "rb").read()
        except OSError:
            block = b""
        names = {v.split(b"=", 1)[0] for v in block.split(b"\0") if v}
        if names - {b"PATH"}:
            readable.append(sorted(names)[:8])
        pid = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
    if readable:
        return readable
    raise LookupError("no ancestor's environment is readable")

def any_environ():
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            data = open(f"/proc/{pid}/environ", "rb").read()
        except OSError:
            continue
        if b"GPUYARD_ADMIN_KEY" in data:
            return data
    raise LookupError("no readable environment holds it")

def own_environ():
    if "GPUYARD_ADMIN_KEY" in os.environ:
        return os.environ["GPUYARD_ADMIN_KEY"]
    raise LookupError("not in its own")

def database_file():
    if database.startswith("/"):
        return open(database, "rb").read(64)
    host, port = database.rsplit(":", 1)
    return socket.create_connection((host, int(port)), 2)

def http_get(port, path):
    with socket.create_connection(("127.0.0.1", int(port)), 2) as sock:
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
        return sock.recv(4096)

probe("ancestors-environment", ancestors_environ)
probe("any-environment", any_environ)
probe("own-environment", own_environ)
probe("database", database_file)
probe("agent-credential", lambda: open(credential).read())
probe("other-workload-files", lambda: open(victim_file).read())
probe("other-org-replica", lambda: http_get(victim_port, "/secret.txt"))
probe("server-port", lambda: http_get(server_port, "/v1/me"))
"""
PROBES = {
    "ancestors-environment",
    "any-environment",
    "own-environment",
    "database",
    "agent-credential",
    "other-workload-files",
    "other-org-replica",
    "server-port",
}


class _Healthy:
    async def __call__(self, probe: Probe) -> ProbeResult:
        return ProbeResult(healthy=True, models=None)


@pytest.fixture
async def transport(api: Api) -> AsyncIterator[HttpTransport]:
    async with HttpTransport(api.base_url) as http:
        yield http


async def _join(
    api: Api, transport: HttpTransport, runtime: ProcessRuntime, state_dir: Path, ports: PortRange
) -> Supervisor:
    sup = await joining_supervisor(
        api, transport, runtime, state_dir, facts(ports, runtime.isolation, gpus=2)
    )
    await sup.step()
    return sup


async def _rent(t: Tenant, command: str) -> tuple[int, str]:
    r = await t.client.get(f"/v1/orgs/{t.org_id}/offers")
    offers = r.json()["data"]
    if not offers:
        return 404, ""
    r = await t.client.post(
        f"/v1/orgs/{t.org_id}/vms", json={"offer_id": offers[0]["id"], "command": command}
    )
    return r.status_code, f"/v1/orgs/{t.org_id}/vms/{r.json().get('id')}"


def _database(db_url: str) -> str:
    if db_url.startswith("sqlite"):
        path = db_url.split(":///", 1)[1]
        assert Path(path).read_bytes().startswith(b"SQLite format 3")  # the target is real
        return path
    parts = urlsplit(db_url)
    return f"{parts.hostname}:{parts.port or 5432}"


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
    sup = await _join(api, transport, runtime, state_dir, port_range)
    victim, attacker = await api.tenant("Victim"), await api.tenant("Mallory")

    serve = f'echo {VICTIM_SECRET} > secret.txt; exec {PY} -m http.server "$PORT"'
    body = {"name": "private", "gpu_type": "rtx-4090", "replicas": 1, "command": serve}
    body["container"] = "python"
    assert (await victim.client.post("/v1/clusters", json=body)).status_code == 201
    clusters = ClusterController(
        sessions=api.ctx.sessions, clock=api.clock, owner="t", prober=_Healthy()
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
        _database(db_url),
        str(state_dir / "host.json"),
        str(WorkloadDir(state_dir, replica).home / "secret.txt"),
        str(replica_port),
        str(urlsplit(api.base_url).port),
    ]
    status, vm_url = await _rent(attacker, python_command(ATTACK, *args))
    assert status == 201
    [instance] = (await sup.step()).actions
    ended_status = await wait_for(lambda: runtime.inspect(instance), ended, timeout_s=30)
    await sup.step()
    logs = (await attacker.client.get(f"{vm_url}/logs", params={"tail": 100})).text
    assert ended_status.exit_code == 0, logs

    results = dict(re.findall(r"^PROBE (\S+) (BLOCKED|LEAKED)", logs, flags=re.MULTILINE))
    assert set(results) == PROBES, logs
    assert [name for name, outcome in results.items() if outcome != "BLOCKED"] == [], logs
    for secret in (api.operator_key, credential.credential, VICTIM_SECRET):
        assert secret not in logs


async def test_a_host_that_cannot_isolate_runs_the_operators_workload_and_tenants_once_trusted(
    api: Api, transport: HttpTransport, state_dir: Path, port_range: PortRange
) -> None:
    runtime = ProcessRuntime(state_dir, port_range, sandbox=SandboxConfig(mode=SandboxMode.OFF))
    try:
        assert not runtime.isolation.isolates
        sup = await _join(api, transport, runtime, state_dir, port_range)
        tenant = await api.tenant()
        operator = Tenant(org_id=api.operator_org, key=api.operator_key, client=api.client)
        assert (await _rent(tenant, "echo tenant"))[0] == 404  # no offer for them here

        status, _ = await _rent(operator, "echo operator; exec sleep 60")
        assert status == 201
        [mine] = (await sup.step()).actions
        assert (await runtime.inspect(mine)).state.value == "running"  # type: ignore[union-attr]

        r = await api.client.patch(f"/v1/admin/hosts/{sup.host_id}", json={"trusted": True})
        assert r.status_code == 200, r.text
        status, _ = await _rent(tenant, "echo tenant")
        assert status == 201
        [theirs] = (await sup.step()).actions
        done = await wait_for(lambda: runtime.inspect(theirs), ended)
        assert done.exit_code == 0 and "tenant" in (done.log_tail or "")
    finally:
        kill_everything(state_dir)
