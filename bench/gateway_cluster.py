"""gpuyard serving the fake upstream, set up over HTTP the way a real deployment is.

A real ``gpuyard server`` (controllers running) on a scratch database; an org and its key; a host
that joins with a token and speaks the agent protocol (register, then heartbeats), played by this
process so that the replica it is told to run is the fake upstream already listening; a cluster of
one replica created with the org's key. The host reports the replica ``running`` on the upstream's
port and keeps heartbeating; the cluster controller probes ``/health``, discovers the model from
``/v1/models``, and the cluster turns healthy. Ready when ``GET /v1/models`` lists the model for the
org's key.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from heartbeat_fleet import ok, org_with_key
from scratch_db import scratch_database
from server_process import log_tail, running_server

from gpuyard.core.credentials import new_api_key
from gpuyard.core.workload import WorkloadSpec

READY_TIMEOUT_S = 120.0
GPU = ("NVIDIA GeForce RTX 4090", 24564)


@dataclass(frozen=True, slots=True)
class Gpuyard:
    """A gpuyard server that routes ``model`` to the fake upstream for ``key``'s org."""

    base_url: str
    key: str
    pid: int
    log_path: Path
    org_id: str = ""
    database_url: str = ""


def host_facts() -> dict[str, Any]:
    name, vram = GPU
    return {
        "gpus": [
            {"index": 0, "uuid": "GPU-bench-0", "name": name, "vram_mb": vram, "logical": True}
        ],
        "driver_version": "550.127.05",
        "cuda_version": "12.4",
        "cpu_cores": 16,
        "ram_mb": 64_000,
        "disk_free_mb": 500_000,
        "disk_total_mb": 1_000_000,
        "hostname": "bench-host",
        "address": "127.0.0.1",
        "port_range": {"start": 40000, "end": 40999},
        "os": "Linux",
        # A host that isolates: one that does not runs only the operator's workloads.
        "isolation": {"isolates": True, "runtime": "process", "sandbox": "bubblewrap"},
    }


@dataclass
class FakeHost:
    """A host that runs every replica it is assigned on the upstream's port (it is already up)."""

    credential: str
    upstream_port: int
    interval_s: float
    facts: dict[str, Any] = field(default_factory=host_facts)
    statuses: dict[str, dict[str, Any]] = field(default_factory=dict)

    async def beat(self, http: httpx.AsyncClient) -> None:
        body = {"facts": self.facts, "workloads": list(self.statuses.values())}
        answer = ok(
            await http.post(
                "/v1/agent/heartbeat",
                json=body,
                headers={"Authorization": f"Bearer {self.credential}"},
            )
        )
        assigned = {a["spec"]["id"]: a for a in answer["workloads"]}
        for workload_id in list(self.statuses):
            if workload_id not in assigned:
                del self.statuses[workload_id]
        for workload_id, a in assigned.items():
            state = "running" if a["desired"] == "running" else "stopped"
            self.statuses[workload_id] = {
                "id": workload_id,
                "state": state,
                "host_port": self.upstream_port,
                "spec_hash": WorkloadSpec.model_validate(a["spec"]).spec_hash(),
            }

    async def keep_beating(self, http: httpx.AsyncClient) -> None:
        while True:
            try:
                await self.beat(http)
            except (httpx.HTTPError, RuntimeError) as exc:  # a busy server: try again soon
                print(f"  .. heartbeat failed: {exc!r}", file=sys.stderr, flush=True)
                await asyncio.sleep(1.0)
                continue
            await asyncio.sleep(self.interval_s)


async def join(operator: httpx.AsyncClient, upstream_port: int) -> FakeHost:
    token = ok(await operator.post("/v1/admin/join-tokens", json={"name": "bench"}), 201)["token"]
    reg = ok(
        await operator.post(
            "/v1/agent/register",
            json={"token": token, "name": "bench-host", "facts": host_facts()},
        )
    )
    return FakeHost(reg["credential"], upstream_port, float(reg["heartbeat_interval_s"]))


async def wait_serving(client: httpx.AsyncClient, cluster_id: str, model: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    status = "?"
    while time.monotonic() < deadline:
        status = ok(await client.get(f"/v1/clusters/{cluster_id}"))["status"]
        if status == "healthy":
            listed = ok(await client.get("/v1/models"))["data"]
            if any(m["id"] == model for m in listed):
                return
        await asyncio.sleep(0.5)
    raise RuntimeError(f"cluster not serving {model} after {READY_TIMEOUT_S:.0f} s: {status}")


@asynccontextmanager
async def gpuyard_serving(
    upstream_port: int,
    model: str,
    *,
    db: str,
    workdir: Path,
    admin_url: str,
    command: Sequence[str] | None = None,
) -> AsyncIterator[Gpuyard]:
    """A ``gpuyard server`` (or ``command``, configured the same way) routing ``model`` to the
    upstream on ``upstream_port``."""
    admin_key = new_api_key()
    async with (
        scratch_database(db, directory=workdir, admin_url=admin_url, migrated=False) as url,
        running_server(
            url,
            data_dir=workdir / "gpuyard",
            admin_key=admin_key,
            run_controllers=True,
            command=command,
        ) as server,
        httpx.AsyncClient(
            base_url=server.base_url,
            headers={"Authorization": f"Bearer {admin_key}"},
            timeout=30,
        ) as operator,
    ):
        org_id, key = await org_with_key(operator, "Gateway bench")
        host = await join(operator, upstream_port)
        beating = asyncio.create_task(host.keep_beating(operator), name="bench-host-heartbeats")
        try:
            async with httpx.AsyncClient(
                base_url=server.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
            ) as org:
                cluster = ok(
                    await org.post(
                        "/v1/clusters",
                        json={
                            "name": "bench",
                            "gpu_type": "rtx-4090",
                            "replicas": 1,
                            "container": "bench/fake-openai",
                        },
                    ),
                    201,
                )
                await wait_serving(org, cluster["id"], model)
            yield Gpuyard(server.base_url, key, server.pid, server.log_path, org_id, url)
        except BaseException:
            print(f"gpuyard server log tail:\n{log_tail(server.log_path)}", file=sys.stderr)
            raise
        finally:
            beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beating
