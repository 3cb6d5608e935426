"""Helpers for marketplace tests: a host that speaks the agent protocol over HTTP, by hand.

It is not the real agent (tests/agent covers that); it lets a test say exactly what a host
reports, step by step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from gpuyard.core.workload import WorkloadSpec
from tests.harness import Api


def facts(gpus: list[tuple[str, int | None]], **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "gpus": [
            {
                "index": i,
                "uuid": f"GPU-{i:04d}-{name.replace(' ', '')}",
                "name": name,
                "vram_mb": vram,
                "logical": True,
            }
            for i, (name, vram) in enumerate(gpus)
        ],
        "driver_version": "550.54",
        "cuda_version": "12.4",
        "cpu_cores": 32,
        "ram_mb": 128_000,
        "disk_free_mb": 1_024_000,
        "disk_total_mb": 2_048_000,
        "hostname": "gpu-box",
        "address": "127.0.0.1",
        "port_range": {"start": 40000, "end": 40999},
        "os": "Linux",
        "isolation": {"isolates": True, "runtime": "process", "sandbox": "bubblewrap 0.8.0"},
    }
    body.update(over)
    return body


@dataclass
class FakeHost:
    api: Api
    host_id: str
    credential: str
    facts: dict[str, Any]
    statuses: dict[str, dict[str, Any]] = field(default_factory=dict)
    hashes: dict[str, str] = field(default_factory=dict)  # spec hash of the latest assignment
    _client: httpx.AsyncClient | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def client(self) -> httpx.AsyncClient:
        """The host's client, made once (closed with the API's)."""
        if self._client is None:
            self._client = self.api.client_for(self.credential)
        return self._client

    async def beat(self) -> dict[str, Any]:
        body = {"facts": self.facts, "workloads": list(self.statuses.values())}
        r = await self.client.post("/v1/agent/heartbeat", json=body)
        assert r.status_code == 200, r.text
        answer: dict[str, Any] = r.json()
        for a in answer["workloads"]:
            self.hashes[a["spec"]["id"]] = WorkloadSpec.model_validate(a["spec"]).spec_hash()
        return answer

    def report(self, workload_id: str, state: str, **extra: Any) -> None:
        """Report like an agent: about the spec it was last given, unless told otherwise."""
        extra.setdefault("spec_hash", self.hashes.get(workload_id))
        self.statuses[workload_id] = {"id": workload_id, "state": state, **extra}

    def forget(self, workload_id: str) -> None:
        self.statuses.pop(workload_id, None)


async def join_host(
    api: Api, gpus: list[tuple[str, int | None]], name: str = "box", **over: Any
) -> FakeHost:
    r = await api.client.post("/v1/admin/join-tokens", json={"name": name})
    assert r.status_code == 201, r.text
    token = r.json()["token"]
    body = {"token": token, "name": name, "facts": facts(gpus, **over)}
    r = await api.client_for(None).post("/v1/agent/register", json=body)
    assert r.status_code == 200, r.text
    reg = r.json()
    return FakeHost(
        api=api, host_id=reg["host_id"], credential=reg["credential"], facts=body["facts"]
    )
