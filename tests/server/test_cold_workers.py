"""A stopped (cold) serverless worker keeps its files on its host but not its GPUs: they are free
for anything else once its host reports it stopped. Starting it takes the same GPUs again (its
spec unchanged, so the agent starts it in place); when they were taken meanwhile, it stays
stopped and the autoscaler creates a worker on another host instead.

The autoscaler and the clusters controller are driven step by step on the manual clock; the
hosts are fake agents (tests/server/market.py).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from gpuyard.server import orm
from tests.harness import Api
from tests.server.market import FakeHost, join_host
from tests.server.serverless_kit import (
    RTX,
    autoscaler,
    make_endpoint,
    report,
    run_assigned,
    settle,
    workers,
)
from tests.server.test_cluster_drain import gpu_holders
from tests.server.test_clusters import Health, controller


async def route(api: Api, ep: dict[str, Any], request_idx: int = 0) -> dict[str, Any]:
    body = {"endpoint": "llm", "api_key": ep["api_key"], "cost": 10, "request_idx": request_idx}
    r = await api.client_for(None).post("/route/", json=body)
    assert r.status_code == 200, r.text
    return dict(r.json())


async def finish(api: Api, spec: dict[str, Any], worker: int, idx: int) -> None:
    done = {
        "worker_id": worker,
        "mtoken": spec["env"]["MASTER_TOKEN"],
        "requests": [{"request_idx": idx, "success": True, "status": "Success"}],
    }
    r = await api.client_for(None).post("/delete_requests/", json=done)
    assert r.status_code == 200, r.text


async def spec_hash(api: Api, workload_id: str) -> str:
    async with api.ctx.sessions() as s:
        found = await s.scalar(select(orm.Workload.spec_hash).where(orm.Workload.id == workload_id))
    assert found is not None
    return found


async def idle_until_stopped(api: Api, ctl: Any, host: FakeHost, t: Any, number: int) -> None:
    api.clock.advance(120)  # past the inactivity timeout and the load's smoothing
    await settle(ctl)
    assert (await workers(t, number))[0]["status"] == "stopping"
    await run_assigned(host)
    await settle(ctl)
    assert (await workers(t, number))[0]["status"] == "stopped"


async def test_a_cold_worker_lets_its_gpu_go_and_takes_it_back_or_another_host(api: Api) -> None:
    first = await join_host(api, [RTX], name="first")
    t = await api.tenant()
    ctl = autoscaler(api)
    ep = await make_endpoint(t, inactivity_timeout=60, cold_workers=1)
    idx = (await route(api, ep))["request_idx"]
    await settle(ctl)
    [(wid, spec)] = (await run_assigned(first)).items()
    number = int(spec["env"]["CONTAINER_ID"])
    assert await report(api, spec) == 200
    await settle(ctl)
    assert (await route(api, ep, idx))["url"]
    await finish(api, spec, number, idx)
    assert await gpu_holders(api, first) == [wid]
    hashed = await spec_hash(api, wid)

    await idle_until_stopped(api, ctl, first, t, number)
    assert await gpu_holders(api, first) == [None]  # free while it is cold
    assert (await first.beat())["workloads"][0]["desired"] == "stopped"  # its files stay

    # A request: the cold worker starts again, on the same GPU, with the same spec.
    idx = (await route(api, ep))["request_idx"]
    await settle(ctl)
    assert (await workers(t, number))[0]["status"] == "starting"
    assert await gpu_holders(api, first) == [wid]
    [assigned] = (await first.beat())["workloads"]
    assert assigned["desired"] == "running" and await spec_hash(api, wid) == hashed
    first.report(wid, "running", host_port=41000 + number)
    await first.beat()
    assert await report(api, spec) == 200
    await settle(ctl)
    assert (await route(api, ep, idx))["url"]
    await finish(api, spec, number, idx)
    await idle_until_stopped(api, ctl, first, t, number)
    assert await gpu_holders(api, first) == [None]

    # Its GPU goes to a cluster's replica meanwhile: a request makes a new worker elsewhere.
    clusters = controller(api, Health())
    body = {"name": "c", "gpu_type": "rtx-4090", "replicas": 1, "container": "x"}
    assert (await t.client.post("/v1/clusters", json=body)).status_code == 201
    await clusters.step()
    [replica] = await gpu_holders(api, first)
    assert replica is not None and replica != wid
    second = await join_host(api, [RTX], name="second")
    await route(api, ep)
    await settle(ctl)
    states = {w["id"]: w["status"] for w in await workers(t, number)}
    assert states[number] == "stopped" and len(states) == 2
    [(new, _)] = (await run_assigned(second)).items()
    assert await gpu_holders(api, second) == [new]
    assert await gpu_holders(api, first) == [replica]
