"""The ``gpuyard`` client commands, run as real subprocesses against a served API."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest

from tests.harness import Api
from tests.server.market import join_host

pytestmark = pytest.mark.slow


async def gy(
    api: Api, *args: str, key: str | None = None, ok: bool = True
) -> subprocess.CompletedProcess[str]:
    env = os.environ | {
        "GPUYARD_URL": api.base_url,
        "GPUYARD_API_KEY": key or api.operator_key,
        "COLUMNS": "200",
    }
    proc = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "gpuyard.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if ok:
        assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc


@pytest.fixture(params=["sqlite"])
def db_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_operator_and_customer_flow(api: Api) -> None:
    host = await join_host(api, [("RTX 4090", 24564)] * 2)
    token = (await gy(api, "join-tokens", "create", "--name", "next")).stdout.strip()
    assert token.startswith("gyj_")
    await gy(api, "prices", "set", "RTX_4090", "35")
    hosts = json.loads((await gy(api, "hosts", "list", "--raw")).stdout)
    assert hosts[0]["id"] == host.host_id
    org = json.loads((await gy(api, "orgs", "create", "Acme", "--raw")).stdout)
    key = org["api_key"]

    found = json.loads(
        (
            await gy(api, "offers", "search", "gpu_name=RTX_4090 num_gpus>=2", "--raw", key=key)
        ).stdout
    )
    assert [(o["num_gpus"], o["price_cents_per_hour"]) for o in found] == [(2, 70)]
    table = (await gy(api, "offers", "search", "num_gpus=1", "-o", "dph_total-", key=key)).stdout
    assert "RTX 4090" in table

    vm = json.loads(
        (
            await gy(
                api,
                "vms",
                "create",
                str(found[0]["id"]),
                "--command",
                "sleep 60",
                "-e",
                "A=1",
                "--label",
                "job",
                "--raw",
                key=key,
            )
        ).stdout
    )
    assert vm["label"] == "job" and vm["actual_status"] == "loading"
    listed = (await gy(api, "vms", "list", key=key)).stdout
    assert vm["id"] in listed
    stopped = json.loads((await gy(api, "vms", "stop", vm["id"], "--raw", key=key)).stdout)
    assert stopped["intended_status"] == "stopped"
    await gy(api, "vms", "destroy", vm["id"], key=key)
    missing = await gy(api, "vms", "get", vm["id"], key=key, ok=False)
    assert missing.returncode == 1
    assert "not found" in missing.stderr and "Traceback" not in missing.stderr


async def test_clear_errors(api: Api) -> None:
    bad_key = await gy(api, "me", key="vl_" + "x" * 43, ok=False)
    assert bad_key.returncode == 1 and "invalid API key" in bad_key.stderr
    bad_query = await gy(api, "offers", "search", "gpu_nam=1", ok=False)
    assert bad_query.returncode == 1 and "gpu_nam" in bad_query.stderr
    env = os.environ | {"GPUYARD_URL": "http://127.0.0.1:9", "GPUYARD_API_KEY": api.operator_key}
    down = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "gpuyard.cli.main", "me"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert down.returncode == 1 and "cannot reach" in down.stderr
