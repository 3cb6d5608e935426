"""Helpers for serverless tests: an endpoint and a workergroup made over the Vast dialect, the
autoscaler driven step by step, and a host that runs what it is told (tests/server/market.py)."""

from __future__ import annotations

from typing import Any

from gpuyard.server.controllers.autoscaler import AutoscalerController
from tests.harness import Api, Tenant
from tests.server.market import FakeHost

RTX = ("RTX 4090", 24564)
LAUNCH = "--image python --env '-p 8000:8000 -e MODEL=tiny' --onstart-cmd 'python -m worker'"


def autoscaler(api: Api) -> AutoscalerController:
    return AutoscalerController(
        sessions=api.ctx.sessions, clock=api.clock, owner="t", report_url=api.base_url
    )


async def settle(ctl: AutoscalerController) -> int:
    """One pass: step until nothing is due now; how many endpoints were handled."""
    handled = 0
    while n := await ctl.step():
        handled += n
    return handled


def endpoint_body(name: str = "llm", **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "client_id": "me",
        "endpoint_name": name,
        "min_load": 0.0,
        "min_cold_load": 0.0,
        "target_util": 0.9,
        "cold_mult": 1.0,
        "cold_workers": 0,
        "max_workers": 3,
        "max_queue_time": 30.0,
        "target_queue_time": 10.0,
        "inactivity_timeout": 60,
        "autoscaler_instance": "prod",
    }
    body.update(over)
    return body


async def make_endpoint(t: Tenant, name: str = "llm", **over: Any) -> dict[str, Any]:
    r = await t.client.post("/api/v0/endptjobs/", json=endpoint_body(name, **over))
    assert r.status_code == 200, r.text
    number = r.json()["result"]
    rows = (await t.client.get("/api/v0/endptjobs/")).json()["results"]
    [row] = [e for e in rows if e["id"] == number]
    r = await t.client.post(
        "/api/v0/autojobs/",
        json={
            "client_id": "me",
            "endpoint_name": name,
            "launch_args": LAUNCH,
            "search_params": "gpu_name=RTX_4090 verified=True rentable=True rented=False",
            "template_hash": None,
            "template_id": None,
            "gpu_ram": None,
            "endpoint_id": None,
            "autoscaler_instance": "prod",
        },
    )
    assert r.status_code == 200, r.text
    row["workergroup"] = r.json()["id"]
    return row


async def workers(t: Tenant, number: int) -> list[dict[str, Any]]:
    r = await t.client.post("/get_endpoint_workers/", json={"id": number})
    assert r.status_code == 200, r.text
    found: list[dict[str, Any]] = r.json()
    return found


async def run_assigned(host: FakeHost) -> dict[str, dict[str, Any]]:
    """The host starts what it should run, stops what it should stop, and lets removed ones go;
    the specs it runs, by workload id."""
    beat = await host.beat()
    running: dict[str, dict[str, Any]] = {}
    for a in beat["workloads"]:
        wid = a["spec"]["id"]
        if a["desired"] == "removed":
            host.forget(wid)
        elif a["desired"] == "stopped":
            host.report(wid, "stopped")
        else:
            port = 41000 + int(a["spec"]["env"]["CONTAINER_ID"])
            host.report(wid, "running", host_port=port)
            running[wid] = a["spec"]
    await host.beat()
    return running


async def report(api: Api, spec: dict[str, Any], **over: Any) -> int:
    """A worker's status report, as Vast's worker library sends it (no org key)."""
    env = spec["env"]
    body: dict[str, Any] = {
        "id": int(env["CONTAINER_ID"]),
        "mtoken": env["MASTER_TOKEN"],
        "version": "0",
        "loadtime": 2.5,
        "cur_load": 0.0,
        "new_load": 0.0,
        "rej_load": 0.0,
        "max_perf": 100.0,
        "cur_perf": 0.0,
        "error_msg": "",
        "num_requests_working": 0,
        "num_requests_recieved": 0,
        "additional_disk_usage": 0.0,
        "disk_usage": 1.0,
        "working_request_idxs": [],
        "cur_capacity": 0,
        "max_capacity": 0,
        "url": f"http://127.0.0.1:{41000 + int(env['CONTAINER_ID'])}",
    }
    body.update(over)
    r = await api.client_for(None).post("/worker_status/", json=body)
    return r.status_code
