"""Where the autoscaler's new workers go, on both databases: on ``test_workers`` different hosts
first, then on the host with the best measured perf per dollar (the operator's GPU prices), even
where the scheduler's own order (spread, then the older host) would pick another."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update

from gpuyard.server import orm
from gpuyard.server.db import write_session
from gpuyard.server.services import serverless_fleet
from tests.harness import Api
from tests.server.market import join_host
from tests.server.serverless_kit import endpoint_body

CHEAP = ("RTX 3090", 24576)
DEAR = ("RTX 4090", 24564)


async def new_worker(api: Api) -> str:
    """The host the next worker of the group goes to."""
    async with write_session(api.ctx.sessions) as s:
        endpoint = await s.scalar(select(orm.Endpoint))
        group = await s.scalar(select(orm.Workergroup))
        assert endpoint is not None and group is not None
        worker = await serverless_fleet.create_worker(
            s, clock=api.clock, endpoint=endpoint, group=group, report_url=api.base_url
        )
        assert worker is not None and worker.host_id is not None
        return worker.host_id


async def measured(api: Api, host_id: str, perf: float) -> None:
    async with write_session(api.ctx.sessions) as s:
        await s.execute(
            update(orm.ServerlessWorker)
            .where(orm.ServerlessWorker.host_id == host_id)
            .values(max_perf=perf)
        )


async def test_measure_on_test_workers_hosts_then_best_perf_per_dollar(api: Api) -> None:
    cheap = await join_host(api, [CHEAP] * 4, name="cheap")  # the older host
    dear = await join_host(api, [DEAR] * 4, name="dear")
    for gpu, cents in (("rtx-3090", 20), ("rtx-4090", 100)):
        r = await api.client.put(f"/v1/admin/prices/{gpu}", json={"cents_per_gpu_hour": cents})
        assert r.status_code == 200, r.text
    t = await api.tenant()
    r = await t.client.post("/api/v0/endptjobs/", json=endpoint_body("llm"))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = {
        "endpoint_name": "llm",
        "launch_args": "--image python --env '-p 8000:8000' --onstart-cmd 'python -m worker'",
        "search_params": "verified=True rentable=True rented=False",
        "gpu_ram": 20,
        "test_workers": 2,
    }
    r = await t.client.post("/api/v0/autojobs/", json=body)
    assert r.status_code == 200, r.text

    first = await new_worker(api)
    await measured(api, first, 0.0)  # loading: nothing measured yet
    second = await new_worker(api)
    assert {first, second} == {cheap.host_id, dear.host_id}  # two hosts measure

    await measured(api, cheap.host_id, 10.0)  # 0.5 perf per cent-hour
    await measured(api, dear.host_id, 100.0)  # 1.0: the scheduler would spread to cheap
    assert await new_worker(api) == dear.host_id
    await measured(api, dear.host_id, 100.0)
    await measured(api, cheap.host_id, 60.0)  # 3.0 now
    assert await new_worker(api) == cheap.host_id
