"""The hostile tenant of ``test_hostile_tenant.py`` on the docker runtime, on a real private engine.

The real server (SQLite and Postgres) and the real agent run in this test process, the agent with
the docker runtime; a process started with the operator key in its environment stands for the
server as ``gpuyard up`` ran it. Another org's cluster replica serves a secret from its container;
the attacker rents an instance whose command tries, in turn, the processes' environments, the
database, the agent's credential, the victim container's files (at their host path, shown real
from outside), the victim's replica port and the server's port: every attempt must fail.
"""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from gpuyard.agent.runtimes.docker import DockerRuntime
from gpuyard.agent.state import AgentState
from gpuyard.agent.transport import HttpTransport
from gpuyard.core.hosts import PortRange
from gpuyard.server.controllers.clusters import ClusterController
from tests.docker_engine import PYTHON_IMAGE, PrivateEngine
from tests.harness import Api

from .docker_kit import engine_runtime, eventually, http_text, inspect_container
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

pytestmark = pytest.mark.docker


@pytest.fixture
async def transport(api: Api) -> AsyncIterator[HttpTransport]:
    async with HttpTransport(api.base_url) as http:
        yield http


@pytest.fixture
async def runtime(
    docker_engine: PrivateEngine, state_dir: Path, port_range: PortRange
) -> AsyncIterator[DockerRuntime]:
    async with engine_runtime(docker_engine, state_dir, port_range) as docker_runtime:
        assert docker_runtime.isolation.isolates
        yield docker_runtime


def container_file(engine: PrivateEngine, container_id: str, path: str) -> Path:
    """Where a file of a container's own layer lies on the host (the ``vfs`` driver's copy)."""
    layer_db = engine.dir / "root" / "image" / "vfs" / "layerdb" / "mounts" / container_id
    mount_id = (layer_db / "mount-id").read_text().strip()
    return engine.dir / "root" / "vfs" / "dir" / mount_id / path.lstrip("/")


async def test_a_hostile_tenant_reaches_nothing_on_a_shared_docker_host(
    api: Api,
    db_url: str,
    transport: HttpTransport,
    runtime: DockerRuntime,
    docker_engine: PrivateEngine,
    state_dir: Path,
    port_range: PortRange,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GPUYARD_ADMIN_KEY", api.operator_key)
    keeper = await asyncio.create_subprocess_exec(  # the server as `gpuyard up` ran it
        "sleep", "300", env={"GPUYARD_ADMIN_KEY": api.operator_key, "PATH": "/usr/bin:/bin"}
    )
    try:
        await _attack(api, db_url, transport, runtime, docker_engine, state_dir, port_range)
    finally:
        keeper.kill()
        await keeper.wait()


async def _attack(
    api: Api,
    db_url: str,
    transport: HttpTransport,
    runtime: DockerRuntime,
    engine: PrivateEngine,
    state_dir: Path,
    port_range: PortRange,
) -> None:
    sup = await join_shared_host(api, transport, runtime, state_dir, port_range)
    victim, attacker = await api.tenant("Victim"), await api.tenant("Mallory")

    serve = (
        f"mkdir -p /srv && cd /srv && echo {VICTIM_SECRET} > secret.txt"
        ' && exec python3 -m http.server "$PORT"'
    )
    body = {"name": "private", "gpu_type": "rtx-4090", "replicas": 1, "command": serve}
    body["container"] = PYTHON_IMAGE
    assert (await victim.client.post("/v1/clusters", json=body)).status_code == 201
    clusters = ClusterController(
        sessions=api.ctx.sessions, clock=api.clock, owner="t", prober=Healthy()
    )
    await clusters.step()
    [replica] = (await sup.step()).actions
    status = await runtime.inspect(replica)
    assert status is not None and status.host_port is not None and status.container_id
    replica_port = status.host_port
    served = await eventually(lambda: http_text(replica_port, "/secret.txt"), timeout_s=30)
    assert served.strip() == VICTIM_SECRET  # from outside its container the target is real
    victim_file = container_file(engine, status.container_id, "/srv/secret.txt")
    assert victim_file.read_text().strip() == VICTIM_SECRET
    credential = AgentState(state_dir).load_registration()
    assert credential is not None

    args = [
        database_target(db_url),
        str(state_dir / "host.json"),
        str(victim_file),
        str(replica_port),
        str(urlsplit(api.base_url).port),
    ]
    command = " ".join(["exec python3 -c", shlex.quote(ATTACK), *map(shlex.quote, args)])
    rented, vm_url = await rent(attacker, command, image=PYTHON_IMAGE)
    assert rented == 201
    [instance] = (await sup.step()).actions
    ended_status = await wait_for(lambda: runtime.inspect(instance), ended, timeout_s=30)
    await sup.step()
    logs = (await attacker.client.get(f"{vm_url}/logs", params={"tail": 100})).text
    assert ended_status.exit_code == 0, logs

    blocked_everywhere(logs)
    for secret in (api.operator_key, credential.credential, VICTIM_SECRET):
        assert secret not in logs
    networks = {
        inspect_container(engine, s.container_id)["HostConfig"]["NetworkMode"]
        for s in (status, ended_status)
    }
    assert networks == {f"gpuyard-org-{victim.org_id}", f"gpuyard-org-{attacker.org_id}"}
