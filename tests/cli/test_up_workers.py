"""``gpuyard up --workers 2``, the real command in a subprocess: the local agent runs once, in
the parent; every worker's ``/readyz`` waits for it; new work reaches it at once whichever
worker took the request (the workers pass host changes on through their parent); Ctrl-C stops
its workloads, then every worker.

Heartbeats are set to a minute, so a change that reached the agent within seconds came through
its wait on the server, not a heartbeat. Nothing sleeps for time: every wait polls.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from tests.cli.up_kit import (
    Launcher,
    Server,
    alive,
    assert_no_traceback,
    listening,
    wait_for_hosts,
    wait_for_workers,
)

pytestmark = pytest.mark.slow
INSTANCES = 4
HEARTBEAT_S = 60
PROMPTLY_S = 20.0  # well inside a heartbeat interval


def _ready_pids(server: Server, workers: set[int]) -> set[int]:
    """Poll until every worker has answered ``/readyz`` with 200: each try on a new connection,
    asking ``/metrics`` on the same connection which worker it was."""
    ready: set[int] = set()
    deadline = time.monotonic() + PROMPTLY_S
    while ready != workers:
        with httpx.Client(base_url=server.base_url, timeout=10) as client:
            status = client.get("/readyz").status_code
            metrics = client.get("/metrics").text
        (pid,) = [int(line.split('"')[1]) for line in metrics.splitlines() if "pid=" in line]
        if status == 200:
            ready.add(pid)
        assert time.monotonic() < deadline, f"ready: {ready} of {workers}\n{server.output()}"
    return ready


def _running(client: httpx.Client, path: str, server: Server) -> None:
    deadline = time.monotonic() + PROMPTLY_S
    while (vm := client.get(path).json())["actual_status"] != "running":
        assert time.monotonic() < deadline, f"not running after {PROMPTLY_S}s: {vm}"
        time.sleep(0.05)


def _group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` still runs (exited ones not yet reaped by init, as
    a sandbox's inner processes can be for a moment, do not count)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def test_up_with_two_workers_runs_its_local_agent_once(gpuyard: Launcher) -> None:
    server = gpuyard(
        "--gpus",
        f"RTX 4090:{INSTANCES}",
        "--workers",
        "2",
        env={
            "GPUYARD_HEARTBEAT_SECONDS": str(HEARTBEAT_S),
            "GPUYARD_HOST_UNREACHABLE_SECONDS": str(HEARTBEAT_S * 5),
            "GPUYARD_HOST_OFFLINE_SECONDS": str(HEARTBEAT_S * 10),
        },
    )
    server.wait_ready()
    workers = wait_for_workers(server, 2)
    assert _ready_pids(server, workers) == workers  # each was told the local host joined

    key = (server.data_dir / "admin-key").read_text().strip()
    hosts = wait_for_hosts(server, key, 1)
    assert len(hosts) == 1, hosts  # one local agent, not one per worker
    assert server.stderr.count("registered with http://") == 1, server.output()
    assert server.stderr.count("gpuyard.agent.main: agent for http://") == 1, server.output()

    # Each rent comes on a new connection, to either worker; the agent waits on one of them.
    client = httpx.Client(
        base_url=server.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=10
    )
    org = client.get("/v1/me").json()["org_id"]
    for _ in range(INSTANCES):
        offer = next(
            o for o in client.get(f"/v1/orgs/{org}/offers").json()["data"] if o["num_gpus"] == 1
        )
        r = httpx.post(
            f"{server.base_url}/v1/orgs/{org}/vms",
            headers={"Authorization": f"Bearer {key}"},
            json={"offer_id": offer["id"], "command": "exec python3 -m http.server $PORT"},
            timeout=10,
        )
        assert r.status_code == 201, r.text
        _running(client, f"/v1/orgs/{org}/vms/{r.json()['id']}", server)
    records = list((server.data_dir / "agent" / "workloads").glob("*/record.json"))
    groups = [int(json.loads(record.read_text())["pid"]) for record in records]
    assert len(groups) == INSTANCES and all(_group_alive(g) for g in groups)

    assert server.interrupt() == 0, server.output()

    log = server.stderr
    # The agent stopped its workloads (and reported them) before the workers stopped serving.
    assert 0 <= log.find(f"stopping {INSTANCES} workload(s)") < log.find("Shutting down"), log
    assert not any(_group_alive(g) for g in groups), server.output()
    assert server.stderr.count("Application shutdown complete") == 2, server.output()
    assert server.stderr.rstrip().endswith("stopped"), server.output()
    assert not any(alive(pid) for pid in workers)
    assert not listening(server.port)
    assert_no_traceback(server)
