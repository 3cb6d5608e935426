"""A serverless endpoint on a real ``gpuyard server`` and a real ``gpuyard agent`` (process
runtime): the agent runs a real worker (``gpuyard worker serverless``) placed from zero by the
autoscaler, with the environment a serverless worker gets; a request is routed to it with a
signed grant, served, and the endpoint goes back to zero active workers once it is quiet (real
time: the server is started with a short smoothing window and scale-down hold,
``GPUYARD_AUTOSCALE_SMOOTHING_SECONDS`` and ``GPUYARD_AUTOSCALE_HOLD_SECONDS``, so the policy holds
capacity for seconds after the last load instead of the default minute and a half).

The agent runs its workloads in the bubblewrap sandbox (``--sandbox on``): the worker has no
network but its loopback, and reaches ``/worker_status/`` only through the agent's relay of one
loopback port to the server (agent/runtimes/server_relay.py)."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from gpuyard.agent.ports import DEFAULT_PORT_RANGE
from gpuyard.agent.runtimes.process import ProcessRuntime
from tests.cli.up_kit import Launcher, Server, base_env, gpuyard_command, wait_for_hosts

pytestmark = pytest.mark.slow
SRC = Path(__file__).resolve().parents[2] / "src"
SMOOTHING_S = 5.0  # one load sample (services/serverless_demand.py SAMPLE_SECONDS)
HOLD_S = 5.0
AUTOSCALE_ENV = {
    "GPUYARD_AUTOSCALE_SMOOTHING_SECONDS": str(SMOOTHING_S),
    "GPUYARD_AUTOSCALE_HOLD_SECONDS": str(HOLD_S),
}


def until(what: str, check: Any, timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"no {what} after {timeout_s} s"
        time.sleep(0.2)


def start_agent(server: Server, key: str, tmp_path: Path) -> subprocess.Popen[bytes]:
    r = httpx.post(
        f"{server.base_url}/v1/admin/join-tokens",
        headers={"Authorization": f"Bearer {key}"},
        json={"name": "box"},
    )
    assert r.status_code == 201, r.text
    argv = [
        *gpuyard_command(),
        "agent",
        "--server",
        server.base_url,
        "--token",
        r.json()["token"],
        "--gpus",
        "RTX 4090:2",
        "--state-dir",
        str(tmp_path / "agent"),
        "--runtime",
        "process",
        "--sandbox",
        "on",
        "--address",
        "127.0.0.1",
    ]
    log = (tmp_path / "agent.log").open("wb")
    return subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        env=base_env(tmp_path),
        start_new_session=True,
    )


def test_a_worker_from_zero_serves_a_signed_request_and_goes_back(
    gpuyard: Launcher, tmp_path: Path
) -> None:
    server = gpuyard(command="server", env=AUTOSCALE_ENV)
    server.wait_ready()
    key = (server.data_dir / "admin-key").read_text().strip()
    agent = start_agent(server, key, tmp_path)
    try:
        run_the_flow(server, key)
        openai_from_zero(server, key)
    finally:
        os.killpg(agent.pid, signal.SIGTERM)
        agent.wait(timeout=30)
        stop_workloads(tmp_path / "agent")


def stop_workloads(state_dir: Path) -> None:
    """An agent that stops leaves its workloads running (the next one re-adopts them): end them
    through the same runtime, so that no worker outlives the test."""
    runtime = ProcessRuntime(state_dir, DEFAULT_PORT_RANGE)

    async def stop_all() -> None:
        for workload in await runtime.list():
            await runtime.stop(workload.id, grace_s=5)

    asyncio.run(stop_all())


def run_the_flow(server: Server, key: str) -> None:
    wait_for_hosts(server, key, 1)
    api = httpx.Client(
        base_url=server.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )
    body = {
        "endpoint_name": "echo",
        "min_load": 0,
        "cold_workers": 0,
        "cold_mult": 1,
        "max_workers": 1,
        "target_util": 0.9,
        "inactivity_timeout": 1,
    }
    ep_number = api.post("/api/v0/endptjobs/", json=body).json()["result"]
    # The built-in worker image: the agent runs `gpuyard worker serverless` with its own Python.
    launch = f"--image gpuyard/worker:serverless --env '-e PYTHONPATH={SRC} -p 8000:8000'"
    r = api.post(
        "/api/v0/autojobs/",
        json={"endpoint_name": "echo", "launch_args": launch, "search_params": "gpu_name=RTX_4090"},
    )
    assert r.status_code == 200, r.text
    [ep] = [e for e in api.get("/api/v0/endptjobs/").json()["results"] if e["id"] == ep_number]
    plain = httpx.Client(base_url=server.base_url, timeout=30)
    ask = {"endpoint": "echo", "api_key": ep["api_key"], "cost": 10, "request_idx": 0}
    first = plain.post("/route/", json=ask).json()
    assert "url" not in first  # zero workers: it waits, and one is started

    def routed() -> dict[str, Any] | None:
        again = plain.post("/route/", json={**ask, "request_idx": first["request_idx"]}).json()
        return again if "url" in again else None

    try:
        grant = until("ready worker", routed, 90)
    except AssertionError:
        print(api.post("/get_endpoint_workers/", json={"id": ep_number}).json())
        print(api.post("/get_endpoint_logs/", json={"id": ep_number, "tail": 50}).json()["trace"])
        db = sqlite3.connect(server.data_dir / "gpuyard.db")
        print(db.execute("select state, message, log_tail from workloads").fetchall())
        raise
    answer = httpx.post(
        f"{grant['url']}/echo", json={"auth_data": grant, "payload": {"x": 1}}, timeout=30
    )
    assert answer.status_code == 200 and len(answer.json()["result"]) == 64, answer.text
    replay = httpx.post(f"{grant['url']}/echo", json={"auth_data": grant, "payload": {}})
    assert replay.status_code == 401

    def stopped() -> bool:
        found = plain.post(
            "/get_endpoint_workers/",
            json={"id": ep_number},
            headers={"Authorization": f"Bearer {key}"},
        ).json()
        return bool(found) and all(w["status"] in ("stopping", "stopped") for w in found)

    until("scale to zero", stopped, HOLD_S + SMOOTHING_S + 60)


def openai_from_zero(server: Server, key: str) -> None:
    """The OpenAI gateway routes a model to the endpoint of that name: the ``openai`` SDK's call
    is held while a worker starts from zero, then served by it (chat, a stream, embeddings)."""
    api = httpx.Client(
        base_url=server.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )
    body = {"endpoint_name": "tiny-llm", "min_load": 0, "cold_workers": 0, "max_workers": 1}
    ep_number = api.post("/api/v0/endptjobs/", json=body).json()["result"]
    launch = f"--image gpuyard/worker:serverless --env '-e PYTHONPATH={SRC} -p 8000:8000'"
    r = api.post(
        "/api/v0/autojobs/",
        json={
            "endpoint_name": "tiny-llm",
            "launch_args": launch,
            "search_params": "gpu_name=RTX_4090",
        },
    )
    assert r.status_code == 200, r.text
    assert api.post("/get_endpoint_workers/", json={"id": ep_number}).json() == []

    client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=key, timeout=120)
    chat = client.chat.completions.create(
        model="tiny-llm", messages=[{"role": "user", "content": "hello"}], max_tokens=8
    )
    assert chat.model == "tiny-llm" and len(chat.choices[0].message.content or "") == 64
    assert chat.usage is not None and chat.usage.prompt_tokens > 0
    [worker] = api.post("/get_endpoint_workers/", json={"id": ep_number}).json()
    assert worker["status"] == "idle"

    stream = client.chat.completions.create(
        model="tiny-llm", messages=[{"role": "user", "content": "again"}], stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert len(text) == 64
    vectors = client.embeddings.create(model="tiny-llm", input=["a", "b"])
    assert [len(d.embedding) for d in vectors.data] == [8, 8]
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(
            model="no-such-endpoint", messages=[{"role": "user", "content": "x"}]
        )
