"""For the hostile-tenant tests (process and docker runtimes): the attacker's script, a shared
host joined to the real server, renting an instance."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from gpuyard.agent.runtimes.base import Runtime
from gpuyard.agent.supervisor import Supervisor
from gpuyard.agent.transport import HttpTransport
from gpuyard.core.hosts import PortRange
from gpuyard.server.controllers.clusters import Probe, ProbeResult
from tests.harness import Api, Tenant

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
    # The wrapper is given PATH alone (a container's init, the container's own environment); any
    # more is the agent's (or the server's) environment.
    pid, readable, own = os.getppid(), [], {name.encode() for name in os.environ} | {b"PATH"}
    while pid > 0:
        try:
            block = open(f"/proc/{pid}/environ", "rb").read()
        except OSError:
            block = b""
        names = {v.split(b"=", 1)[0] for v in block.split(b"\0") if v}
        if names - own:
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


class Healthy:
    async def __call__(self, probe: Probe) -> ProbeResult:
        return ProbeResult(healthy=True, models=None)


async def join_shared_host(
    api: Api, transport: HttpTransport, runtime: Runtime, state_dir: Path, ports: PortRange
) -> Supervisor:
    """A two-GPU host on the real server, joined and registered, reporting how it isolates."""
    sup = await joining_supervisor(
        api, transport, runtime, state_dir, facts(ports, runtime.isolation, gpus=2)
    )
    await sup.step()
    return sup


async def rent(t: Tenant, command: str, image: str | None = None) -> tuple[int, str]:
    r = await t.client.get(f"/v1/orgs/{t.org_id}/offers")
    offers = r.json()["data"]
    if not offers:
        return 404, ""
    body = {"offer_id": offers[0]["id"], "command": command}
    if image is not None:
        body["image"] = image
    r = await t.client.post(f"/v1/orgs/{t.org_id}/vms", json=body)
    return r.status_code, f"/v1/orgs/{t.org_id}/vms/{r.json().get('id')}"


def database_target(db_url: str) -> str:
    if db_url.startswith("sqlite"):
        path = db_url.split(":///", 1)[1]
        assert Path(path).read_bytes().startswith(b"SQLite format 3")  # the target is real
        return path
    parts = urlsplit(db_url)
    return f"{parts.hostname}:{parts.port or 5432}"


def blocked_everywhere(logs: str) -> dict[str, str]:
    """Each probe's outcome in the attacker's output; every probe must have run."""
    results = dict(re.findall(r"^PROBE (\S+) (BLOCKED|LEAKED)", logs, flags=re.MULTILINE))
    assert set(results) == PROBES, logs
    assert [name for name, outcome in results.items() if outcome != "BLOCKED"] == [], logs
    return results
