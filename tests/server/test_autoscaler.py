"""The autoscaler driven step by step on the manual clock, over HTTP on both databases: scale
from zero on a routed request, a signed grant, never stopping a worker with a request in flight,
back to zero after ``inactivity_timeout``, replacing a worker that never reports, giving up on a
workergroup whose workers keep failing, and more endpoints than one batch; the server's smoothing
and hold settings reach the controller."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from pydantic import ValidationError
from sqlalchemy import select

from gpuyard.core.autoscaling import DEFAULT_TUNING
from gpuyard.server import orm
from gpuyard.server.controllers.autoscaler import AutoscalerController
from gpuyard.server.controllers.runner import build_controllers
from gpuyard.server.settings import Settings
from tests.harness import Api
from tests.server.market import join_host
from tests.server.serverless_kit import (
    RTX,
    autoscaler,
    make_endpoint,
    report,
    run_assigned,
    settle,
    workers,
)


async def route(api: Api, ep: dict[str, Any], request_idx: int = 0) -> dict[str, Any]:
    body = {
        "endpoint": ep["endpoint_name"],
        "api_key": ep["api_key"],
        "cost": 50,
        "request_idx": request_idx,
        "replay_timeout": 60,
    }
    r = await api.client_for(None).post("/route/", json=body)
    assert r.status_code == 200, r.text
    answer: dict[str, Any] = r.json()
    return answer


def verify(pem: str, url: str, signature: str) -> None:
    key = serialization.load_pem_public_key(pem.encode())
    assert isinstance(key, rsa.RSAPublicKey)
    message = json.dumps({"url": url}, indent=4, sort_keys=True).encode()
    key.verify(base64.b64decode(signature), message, padding.PKCS1v15(), hashes.SHA256())


async def test_from_zero_to_a_signed_grant_and_back_to_zero(api: Api) -> None:
    host = await join_host(api, [RTX, RTX])
    t = await api.tenant()
    ctl = autoscaler(api)
    ep = await make_endpoint(t, inactivity_timeout=60)
    assert ep["api_key"].startswith("ep-")
    await settle(ctl)
    assert await workers(t, ep["id"]) == []  # nothing asked: nothing runs

    waiting = await route(api, ep)
    assert set(waiting) == {"endpoint", "status", "request_idx"}  # no "url": not ready
    idx = waiting["request_idx"]
    assert idx > 0
    await settle(ctl)  # the waiting request brings one worker up
    [w] = await workers(t, ep["id"])
    assert w["status"] == "creating" and w["gpu_name"] == "RTX 4090"

    [spec] = (await run_assigned(host)).values()
    env = spec["env"]
    assert env["REPORT_ADDR"] == api.base_url and env["MODEL"] == "tiny"
    assert env["CONTAINER_ID"] == str(w["id"]) and env["WORKER_PORT"] == "8000"
    assert env["PUBLIC_IPADDR"] == "127.0.0.1" and len(env["MASTER_TOKEN"]) > 20
    assert spec["image"] == "python" and spec["command"].endswith("python -m worker")
    await settle(ctl)
    assert (await workers(t, ep["id"]))[0]["status"] == "loading"
    assert (await route(api, ep, idx))["request_idx"] == idx  # still waiting

    assert await report(api, spec, mtoken="wrong") == 401
    assert await report(api, spec, id=w["id"] + 1000) == 401
    assert await report(api, spec, max_perf=-1) == 400
    assert (await workers(t, ep["id"]))[0]["status"] == "loading"  # none of those counted
    assert await report(api, spec) == 200
    [w] = await workers(t, ep["id"])
    assert w["status"] == "idle" and w["perf"] == w["measured_perf"] == 100.0
    assert w["loadtime"] == 2.5 and w["loaded_at"] is not None

    grant = await route(api, ep, idx)
    assert grant["url"] == f"http://127.0.0.1:{41000 + w['id']}"
    assert grant["request_idx"] == grant["reqnum"] == idx and grant["cost"] == 50
    pem = (await api.client_for(None).get("/pubkey/")).text
    verify(pem, grant["url"], grant["signature"])
    assert pem == (await api.client_for(None).get("/pubkey/")).text  # one key

    # In flight: long past the inactivity timeout, the worker (reporting) is not stopped.
    for _ in range(3):
        api.clock.advance(100)
        assert await report(api, spec, num_requests_working=1, cur_load=50.0) == 200
        await settle(ctl)
    [w] = await workers(t, ep["id"])
    assert w["status"] == "idle" and w["reqs_working"] == 1
    assert (await host.beat())["workloads"][0]["desired"] == "running"

    done = {"worker_id": w["id"], "mtoken": env["MASTER_TOKEN"], "requests": []}
    done["requests"] = [{"request_idx": idx, "success": True, "status": "Success"}]
    r = await api.client_for(None).post("/delete_requests/", json=done)
    assert r.status_code == 200, r.text
    assert await report(api, spec, num_requests_working=0) == 200
    await settle(ctl)  # done now, and the endpoint has been quiet for 300 s: stop it
    [w] = await workers(t, ep["id"])
    assert w["status"] == "stopping"
    await run_assigned(host)
    await settle(ctl)
    assert (await workers(t, ep["id"]))[0]["status"] == "stopped"  # zero active workers
    api.clock.advance(DEFAULT_TUNING.destroy_after + 1)
    await settle(ctl)  # kept loaded while the last hour's load may come back
    assert (await workers(t, ep["id"]))[0]["status"] == "stopped"
    api.clock.advance(DEFAULT_TUNING.cold_horizon)
    await settle(ctl)  # no cold workers wanted: the stopped one goes too
    assert (await workers(t, ep["id"]))[0]["status"] == "destroying"
    await run_assigned(host)  # the host lets it go
    await settle(ctl)
    assert await workers(t, ep["id"]) == []
    logs = (await t.client.post("/get_endpoint_logs/", json={"id": ep["id"]})).json()
    assert "worker.placed" in logs["info0"] and "endpoint.scaled: up to" in logs["info1"]


async def test_a_worker_that_never_reports_is_replaced(api: Api) -> None:
    host = await join_host(api, [RTX, RTX])
    t = await api.tenant()
    ctl = autoscaler(api)
    ep = await make_endpoint(t, min_load=10.0)  # always one worker wanted
    await settle(ctl)
    [first] = await workers(t, ep["id"])
    await run_assigned(host)
    await settle(ctl)
    assert (await workers(t, ep["id"]))[0]["status"] == "loading"
    api.clock.advance(DEFAULT_TUNING.load_timeout + 1)  # it never says it loaded
    await settle(ctl)
    states = {w["id"]: w["status"] for w in await workers(t, ep["id"])}
    assert states[first["id"]] == "destroying"
    assert sorted(states.values()) == ["creating", "destroying"]


async def test_a_workergroup_whose_workers_keep_failing_stops_trying(api: Api) -> None:
    host = await join_host(api, [RTX])
    t = await api.tenant()
    ctl = autoscaler(api)
    ep = await make_endpoint(t, min_load=10.0)
    for _ in range(3):
        await settle(ctl)
        beat = await host.beat()
        for a in beat["workloads"]:
            if a["desired"] == "removed":
                host.forget(a["spec"]["id"])
            else:
                host.report(a["spec"]["id"], "failed", exit_code=1, log_tail="ImportError: x\n")
        await host.beat()
        await settle(ctl)
        await run_assigned(host)
        await settle(ctl)
    assert all(w["status"] in ("error", "destroying") for w in await workers(t, ep["id"]))
    api.clock.advance(60)
    await settle(ctl)
    await run_assigned(host)
    await settle(ctl)
    assert await workers(t, ep["id"]) == []  # not restarted forever
    [group] = (await t.client.get("/api/v0/autojobs/")).json()["results"]
    assert "ImportError: x" in group["status_msg"]
    logs = (await t.client.post("/get_autogroup_logs/", json={"id": group["id"]})).json()
    assert "worker.error" in logs["info0"] and "ImportError" in logs["info1"]


async def test_more_endpoints_than_one_batch(api: Api) -> None:
    host = await join_host(api, [RTX] * 30)
    t = await api.tenant()
    ctl = autoscaler(api)
    count = ctl.batch_size + 5
    eps = [await make_endpoint(t, f"ep-{i}", min_load=10.0) for i in range(count)]
    assert await settle(ctl) == count  # one pass handles every endpoint once
    for ep in eps:
        assert [w["status"] for w in await workers(t, ep["id"])] == ["creating"]
    assert len(await run_assigned(host)) == count
    assert await settle(ctl) == count  # every one woken by its worker's start
    for ep in eps:
        assert [w["status"] for w in await workers(t, ep["id"])] == ["loading"]


async def test_requests_are_packed_so_an_idle_worker_can_stop(api: Api) -> None:
    host = await join_host(api, [RTX, RTX])
    t = await api.tenant()
    ctl = autoscaler(api)
    ep = await make_endpoint(t, min_load=150.0, target_util=1.0, inactivity_timeout=30)
    await settle(ctl)  # nothing measured yet: one worker
    specs = list((await run_assigned(host)).values())
    for spec in specs:
        assert await report(api, spec) == 200  # perf 100
    await settle(ctl)  # 150/s wanted: a second one
    specs = list((await run_assigned(host)).values())
    for spec in specs:
        assert await report(api, spec) == 200
    ready = [w for w in await workers(t, ep["id"]) if w["status"] == "idle"]
    assert len(ready) == 2
    grants = [await route(api, ep) for _ in range(3)]  # 50 each: 1.5 s of queue, within 10 s
    assert len({g["worker_id"] for g in grants}) == 1  # packed onto one worker
    busy = grants[0]["worker_id"]
    r = await t.client.put(f"/api/v0/endptjobs/{ep['id']}/", json={"min_load": 0.0})
    assert r.status_code == 200
    api.clock.advance(DEFAULT_TUNING.scale_down_hold + DEFAULT_TUNING.smoothing + 30)
    for spec in specs:  # still reporting; the busy one has its requests in flight
        working = 3 if int(spec["env"]["CONTAINER_ID"]) == busy else 0
        assert await report(api, spec, num_requests_working=working) == 200
    await settle(ctl)
    states = {w["id"]: w["status"] for w in await workers(t, ep["id"])}
    assert states[busy] == "idle"  # in flight: kept
    assert [s for i, s in states.items() if i != busy] == ["stopping"]  # the idle one goes


async def test_deleting_an_endpoint_drains_its_workers_first(api: Api) -> None:
    host = await join_host(api, [RTX])
    t = await api.tenant()
    ctl = autoscaler(api)
    ep = await make_endpoint(t, min_load=10.0)
    await settle(ctl)
    [spec] = (await run_assigned(host)).values()
    assert await report(api, spec) == 200
    grant = await route(api, ep)
    assert grant["url"]
    r = await t.client.delete(f"/api/v0/endptjobs/{ep['id']}/")
    assert r.status_code == 200, r.text
    assert (await t.client.get(f"/api/v0/endptjobs/{ep['id']}/")).status_code == 404
    no_key = await api.client_for(None).post(
        "/route/", json={"endpoint": "llm", "api_key": ep["api_key"], "cost": 1}
    )
    assert no_key.status_code == 401  # a deleted endpoint routes nothing
    await settle(ctl)
    beat = await host.beat()
    assert [a["desired"] for a in beat["workloads"]] == ["running"]  # in flight: still runs
    async with api.ctx.sessions() as s:
        [w] = (await s.execute(select(orm.ServerlessWorker))).scalars().all()
        assert w.status == "stopping"  # out of routing while its request finishes
    env = spec["env"]
    done = {
        "worker_id": int(env["CONTAINER_ID"]),
        "mtoken": env["MASTER_TOKEN"],
        "requests": [{"request_idx": grant["request_idx"], "success": True}],
    }
    assert (await api.client_for(None).post("/delete_requests/", json=done)).status_code == 200
    assert await report(api, spec, num_requests_working=0) == 200
    await settle(ctl)
    assert [a["desired"] for a in (await host.beat())["workloads"]] == ["removed"]
    await run_assigned(host)
    await settle(ctl)
    assert await ctl.step() == 0  # gone: no longer due


async def test_a_silent_worker_gets_no_requests(api: Api) -> None:
    host = await join_host(api, [RTX])
    t = await api.tenant()
    ctl = autoscaler(api)
    ep = await make_endpoint(t, min_load=10.0, max_workers=1)
    await settle(ctl)
    [spec] = (await run_assigned(host)).values()
    assert await report(api, spec) == 200
    assert (await route(api, ep)).get("url")
    api.clock.advance(DEFAULT_TUNING.report_timeout + 1)  # no report since
    answer = await route(api, ep)
    assert "url" not in answer and answer["status"]  # waits for a worker that reports


async def test_an_endpoint_without_a_workergroup_waits_quietly(api: Api) -> None:
    await join_host(api, [RTX])
    t = await api.tenant()
    ctl = autoscaler(api)
    r = await t.client.post("/api/v0/endptjobs/", json={"endpoint_name": "bare", "min_load": 10})
    number = r.json()["result"]
    for _ in range(3):
        await settle(ctl)
        api.clock.advance(5)
    logs = (await t.client.post("/get_endpoint_logs/", json={"id": number})).json()
    assert logs["info0"].splitlines()[-1].endswith("endpoint.created")  # no log line per pass
    assert await workers(t, number) == []


async def test_the_smoothing_and_hold_settings_reach_the_autoscaler(api: Api) -> None:
    default = build_controllers(api.ctx)["autoscaler"]
    assert isinstance(default, AutoscalerController) and default.tuning == DEFAULT_TUNING
    short = api.ctx.settings.model_copy(
        update={"autoscale_smoothing_seconds": 5.0, "autoscale_hold_seconds": 0.0}
    )
    ctl = build_controllers(replace(api.ctx, settings=short))["autoscaler"]
    assert isinstance(ctl, AutoscalerController)
    assert ctl.tuning == replace(DEFAULT_TUNING, smoothing=5.0, scale_down_hold=0.0)


@pytest.mark.parametrize(
    "bad", [{"autoscale_smoothing_seconds": 0}, {"autoscale_hold_seconds": -1}]
)
def test_a_bad_smoothing_or_hold_setting_is_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValidationError, match=next(iter(bad))):
        Settings(**bad)
