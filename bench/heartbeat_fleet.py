"""The simulated fleet of the heartbeat benchmark, set up over HTTP as a real one would be:
join tokens, registrations (8 logical GPUs per agent), rentals, then two heartbeats per agent to
reach steady state (assignments learnt and reported ``running``)."""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx

from gpuyard.core.hosts import HostFacts
from gpuyard.core.offers import OfferRef, encode_offer_id
from gpuyard.core.workload import WorkloadSpec

HEARTBEAT = "/v1/agent/heartbeat"
GPU_TYPES = (  # (name as NVML reports it, VRAM MiB, share of hosts)
    ("NVIDIA GeForce RTX 4090", 24564, 40),
    ("NVIDIA GeForce RTX 3090", 24576, 15),
    ("NVIDIA A100-SXM4-80GB", 81920, 15),
    ("NVIDIA H100 80GB HBM3", 81559, 15),
    ("NVIDIA L40S", 46068, 15),
)
T = TypeVar("T")


@dataclass
class Agent:
    index: int
    facts: dict[str, Any]
    host_id: str = ""
    number: int = 0
    credential: str = ""
    statuses: list[dict[str, Any]] = field(default_factory=list)
    body: bytes = b""

    def heartbeat_body(self) -> bytes:
        return json.dumps({"facts": self.facts, "workloads": self.statuses}).encode()


def agent_facts(index: int, rng: random.Random, gpus: int) -> dict[str, Any]:
    """What ``gpuyard agent --gpus`` reports, as the server stores it (a full JSON dump, so that
    an unchanged host sends facts equal to the stored ones)."""
    name, vram, _ = rng.choices(GPU_TYPES, [w for *_, w in GPU_TYPES])[0]
    facts = HostFacts.model_validate(
        {
            "gpus": [
                {
                    "index": i,
                    "uuid": f"GPU-{index:05d}-{i:02d}",
                    "name": name,
                    "vram_mb": vram,
                    "logical": True,
                }
                for i in range(gpus)
            ],
            "driver_version": "550.127.05",
            "cuda_version": "12.4",
            "cpu_cores": 64,
            "ram_mb": 512_000,
            "disk_free_mb": 3_000_000,
            "disk_total_mb": 4_000_000,
            "hostname": f"gpu-{index:05d}",
            "address": f"10.0.{index >> 8 & 255}.{index & 255}",
            "port_range": {"start": 40000, "end": 40999},
            "os": "Linux",
        }
    )
    return facts.model_dump(mode="json")


async def bounded(concurrency: int, jobs: Sequence[Callable[[], Awaitable[T]]]) -> list[T]:
    gate = asyncio.Semaphore(concurrency)

    async def run(job: Callable[[], Awaitable[T]]) -> T:
        async with gate:
            return await job()

    return list(await asyncio.gather(*(run(j) for j in jobs)))


def ok(response: httpx.Response, expected: int = 200) -> dict[str, Any]:
    if response.status_code != expected:
        raise RuntimeError(
            f"{response.request.method} {response.request.url.path}: "
            f"HTTP {response.status_code} {response.text[:300]}"
        )
    body: dict[str, Any] = response.json()
    return body


@dataclass
class Setup:
    agents: list[Agent]
    instances: int
    register_s: float
    rent_s: float
    settle_s: float


async def org_with_key(operator: httpx.AsyncClient, name: str) -> tuple[str, str]:
    """A new organization (made by the operator) and an ``org:write`` key of it."""
    org = ok(await operator.post("/v1/admin/orgs", json={"name": name}), 201)
    key = ok(
        await operator.post(
            f"/v1/admin/orgs/{org['id']}/api-keys",
            json={"name": "bench", "scopes": ["org:write"]},
        ),
        201,
    )
    return str(org["id"]), str(key["key"])


async def set_up_fleet(
    base_url: str, admin_key: str, args: argparse.Namespace, tls: ssl.SSLContext
) -> Setup:
    rng = random.Random(args.seed)
    agents = [Agent(i, agent_facts(i, rng, args.gpus)) for i in range(args.agents)]
    limits = httpx.Limits(max_connections=args.setup_concurrency)
    operator = httpx.AsyncClient(
        base_url=base_url,
        headers={"Authorization": f"Bearer {admin_key}"},
        timeout=60,
        limits=limits,
        verify=tls,
    )
    anonymous = httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits, verify=tls)
    try:
        org_id, key = await org_with_key(operator, "Bench renter")
        renter = httpx.AsyncClient(
            base_url=base_url,
            headers={"Authorization": f"Bearer {key}"},
            timeout=60,
            limits=limits,
            verify=tls,
        )

        started = time.perf_counter()

        def join(agent: Agent) -> Callable[[], Awaitable[None]]:
            async def run() -> None:
                token = ok(
                    await operator.post(
                        "/v1/admin/join-tokens", json={"name": f"agent-{agent.index}"}
                    ),
                    201,
                )["token"]
                body = {"token": token, "name": agent.facts["hostname"], "facts": agent.facts}
                reg = ok(await anonymous.post("/v1/agent/register", json=body))
                agent.host_id, agent.credential = reg["host_id"], reg["credential"]

            return run

        await bounded(args.setup_concurrency, [join(a) for a in agents])
        numbers: dict[str, int] = {}
        cursor: str | None = None
        while True:
            params = {"limit": "100", **({"cursor": cursor} if cursor else {})}
            page = ok(await operator.get("/v1/admin/hosts", params=params))
            numbers.update({h["id"]: h["number"] for h in page["data"]})
            cursor = page.get("next_cursor")
            if not page.get("has_more"):
                break
        for agent in agents:
            agent.number = numbers[agent.host_id]
        register_s = time.perf_counter() - started

        started = time.perf_counter()

        def rent(agent: Agent) -> Callable[[], Awaitable[None]]:
            async def run() -> None:
                for n in range(args.workloads):
                    offer = encode_offer_id(
                        OfferRef(machine_id=agent.number, first_index=0, num_gpus=1)
                    )
                    body = {
                        "offer_id": offer,
                        "image": "vllm/vllm-openai:v0.6.3",
                        "command": "sleep infinity",
                        "label": f"bench-{agent.index}-{n}",
                        "port": 8000,
                    }
                    ok(await renter.post(f"/v1/orgs/{org_id}/vms", json=body), 201)

            return run

        await bounded(args.setup_concurrency, [rent(a) for a in agents])
        rent_s = time.perf_counter() - started
        await renter.aclose()

        started = time.perf_counter()
        await bounded(args.setup_concurrency, [settle(anonymous, a) for a in agents])
        settle_s = time.perf_counter() - started
    finally:
        await operator.aclose()
        await anonymous.aclose()
    return Setup(agents, args.workloads * len(agents), register_s, rent_s, settle_s)


def settle(client: httpx.AsyncClient, agent: Agent) -> Callable[[], Awaitable[None]]:
    """Two heartbeats: learn the assignments, then report them running (as the agent would once
    its runtime has started them). Afterwards every heartbeat of this agent is steady state."""

    async def run() -> None:
        headers = {
            "Authorization": f"Bearer {agent.credential}",
            "Content-Type": "application/json",
        }
        answer = ok(await client.post(HEARTBEAT, content=agent.heartbeat_body(), headers=headers))
        now = datetime.now(UTC).isoformat()
        agent.statuses = [
            {
                "id": a["spec"]["id"],
                "state": "running",
                "host_port": 40000 + i,
                "pid": 10_000 + i,
                "started_at": now,
                "spec_hash": WorkloadSpec.model_validate(a["spec"]).spec_hash(),
            }
            for i, a in enumerate(answer["workloads"])
        ]
        agent.body = agent.heartbeat_body()
        ok(await client.post(HEARTBEAT, content=agent.body, headers=headers))

    return run
