"""The ``gpuyard`` client commands, run as real subprocesses against a served API."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys

import pytest

from gpuyard.core.money import BalancePolicy
from gpuyard.server.db import write_session
from gpuyard.server.services import token_charges
from tests.harness import Api
from tests.server.market import join_host
from tests.server.test_metering import meter, rented, run_pass, start_running

pytestmark = pytest.mark.slow


async def gy(
    api: Api, *args: str, key: str | None = None, ok: bool = True, columns: int = 200
) -> subprocess.CompletedProcess[str]:
    env = os.environ | {
        "GPUYARD_URL": api.base_url,
        "GPUYARD_API_KEY": key or api.operator_key,
        "COLUMNS": str(columns),
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


async def test_ids_are_never_cut_whatever_the_width(api: Api) -> None:
    """Output is not a terminal here (as in a pipe), and COLUMNS narrows it further."""
    await join_host(api, [("RTX 4090", 24564)])
    org = json.loads((await gy(api, "orgs", "create", "Acme", "--raw")).stdout)
    key = org["api_key"]
    (offer,) = json.loads((await gy(api, "offers", "search", "--raw", key=key)).stdout)
    label = "a-rather-long-label-for-this-instance"
    made = await gy(
        api,
        "vms",
        "create",
        str(offer["id"]),
        "--command",
        "sleep 60",
        "--label",
        label,
        key=key,
        columns=40,
    )
    (vm,) = json.loads((await gy(api, "vms", "list", "--raw", key=key)).stdout)
    outputs = [made.stdout]
    for columns in (40, 80, 200):
        outputs.append((await gy(api, "vms", "list", key=key, columns=columns)).stdout)
    for out in outputs:
        assert vm["id"] in out and label in out, out
        assert "…" not in out
    assert "┃" in outputs[-1] and "┃" not in outputs[1]  # a table where it fits, else records
    keys = await gy(api, "keys", "create", "--name", "ci", key=key, columns=40)
    secret = re.search(r"vl_[A-Za-z0-9_-]{43,}", keys.stdout)
    assert secret is not None, keys.stdout  # a secret shown once is shown whole
    assert (await gy(api, "me", key=secret.group(0))).returncode == 0


async def test_clusters_commands(api: Api) -> None:
    await join_host(api, [("RTX 4090", 24564)] * 2)
    made = json.loads(
        (
            await gy(
                api,
                "clusters",
                "create",
                "web",
                "--gpu-type",
                "rtx-4090",
                "--container",
                "nginx",
                "--replicas",
                "2",
                "-e",
                "A=1",
                "--health-path",
                "/",
                "--raw",
            )
        ).stdout
    )
    assert made["name"] == "web" and made["replicas"] == 2 and made["env"] == {"A": "1"}
    assert made["status"] == "provisioning" and made["health_path"] == "/"
    listed = (await gy(api, "clusters", "list")).stdout
    assert made["id"] in listed and "provisioning" in listed
    by_name = json.loads((await gy(api, "clusters", "get", "web", "--raw")).stdout)
    assert by_name["id"] == made["id"]
    scaled = json.loads((await gy(api, "clusters", "scale", "web", "1", "--raw")).stdout)
    assert scaled["replicas"] == 1
    updated = json.loads(
        (
            await gy(
                api,
                "clusters",
                "update",
                made["id"],
                "--container",
                "nginx:2",
                "-e",
                "B=2",
                "--model",
                "m1",
                "--raw",
            )
        ).stdout
    )
    assert updated["container"] == "nginx:2" and updated["env"] == {"B": "2"}
    assert updated["models"] == ["m1"] and updated["replicas"] == 1
    nothing = await gy(api, "clusters", "update", "web", ok=False)
    assert nothing.returncode == 2 and "at least one" in nothing.stderr
    bad = await gy(
        api,
        "clusters",
        "create",
        "x",
        "--gpu-type",
        "rtx-4090",
        "--container",
        "i",
        "-e",
        "NOEQUALS",
        ok=False,
    )
    assert bad.returncode == 2 and "NAME=VALUE" in bad.stderr
    missing = await gy(api, "clusters", "get", "nope", ok=False)
    assert missing.returncode == 1 and "no cluster named 'nope'" in missing.stderr
    deleted = json.loads((await gy(api, "clusters", "delete", "web", "--raw")).stdout)
    assert deleted["status"] == "deleting"
    gone = await gy(api, "clusters", "get", made["id"], ok=False)
    assert gone.returncode == 1 and "not found" in gone.stderr


async def test_cluster_autoscaling_options(api: Api) -> None:
    await join_host(api, [("RTX 4090", 24564)] * 2)
    base = ["clusters", "create", "auto", "--gpu-type", "rtx-4090", "--container", "i"]
    made = await gy(api, *base, "--min-replicas", "1", "--max-replicas", "3")
    assert "1-3, 4 in flight each" in made.stdout
    shown = await gy(api, "clusters", "get", "auto")
    assert "autoscaling" in shown.stdout and "1-3, 4 in flight each" in shown.stdout
    changed = await gy(
        api, "clusters", "update", "auto", "--max-replicas", "2", "--target-concurrency", "8"
    )
    assert "1-2, 8 in flight each" in changed.stdout
    off = json.loads(
        (await gy(api, "clusters", "update", "auto", "--no-autoscaling", "--raw")).stdout
    )
    assert off["autoscaling"] is None
    bad = await gy(
        api, *base[:2], "other", *base[3:], "--min-replicas", "3", "--max-replicas", "2", ok=False
    )
    assert bad.returncode == 1 and "max_replicas must be >= min_replicas" in bad.stderr
    half = await gy(api, *base[:2], "other", *base[3:], "--min-replicas", "0", ok=False)
    assert half.returncode == 2 and "--max-replicas" in half.stderr


async def test_billing_and_usage(api: Api) -> None:
    t, host, vm, wid = await rented(api)
    credited = json.loads(
        (
            await gy(
                api, "billing", "credit", t.org_id, "2500", "--description", "welcome",
                "--idempotency-key", "w1", "--raw",
            )
        ).stdout
    )  # fmt: skip
    assert credited["amount_cents"] == 2500
    again = await gy(
        api, "billing", "credit", t.org_id, "2500", "--description", "welcome",
        "--idempotency-key", "w1",
    )  # fmt: skip
    assert credited["id"] in again.stdout  # the same credit, not a second
    other = await gy(api, "billing", "credit", t.org_id, "9", "--idempotency-key", "w1", ok=False)
    assert "idempotency_key_reused" in other.stderr
    await start_running(api, host, wid)
    api.clock.advance(hours=10)
    await run_pass(meter(api))
    summary = json.loads((await gy(api, "billing", "--raw", key=t.key)).stdout)
    assert summary["balance_cents"] == 2500 - 70
    table = (await gy(api, "billing", key=t.key)).stdout
    assert "2430" in table and "balance_cents" in table
    ledger = json.loads((await gy(api, "billing", "ledger", "--raw", key=t.key)).stdout)
    assert [e["amount_cents"] for e in ledger] == [2500, -70]
    usage = (await gy(api, "usage", key=t.key)).stdout
    assert vm["id"] in usage and "36000 GPU-seconds, 70 cents" in usage
    refused = await gy(api, "billing", "credit", t.org_id, "100", key=t.key, ok=False)
    assert refused.returncode != 0 and "operator" in refused.stderr


async def test_usage_shows_tokens_and_characters(api: Api) -> None:
    t = await api.tenant()
    r = await api.client.post(
        f"/v1/admin/orgs/{t.org_id}/credits",
        json={"amount_cents": 10_000},
        headers={"Idempotency-Key": "tokens"},
    )
    assert r.status_code == 201, r.text
    for model, per_input, per_output, per_char in (("tiny", 100, 200, 0), ("voice", 0, 0, 5000)):
        r = await api.client.put(
            "/v1/admin/model-prices",
            json={
                "model": model,
                "cents_per_million_input": per_input,
                "cents_per_million_output": per_output,
                "cents_per_million_characters": per_char,
            },
        )
        assert r.status_code == 200, r.text
    policy = BalancePolicy()
    # Two chat requests and one spoken one, held and settled as the gateway does.
    for request_id, model, used in (
        ("req-1", "tiny", (70_000, 30_000, 0)),
        ("req-2", "tiny", (50_000, 10_000, 0)),
        ("req-3", "voice", (0, 0, 4_321)),
    ):
        async with write_session(api.ctx.sessions) as s:
            held = await token_charges.hold(
                s, clock=api.clock, policy=policy, org_id=t.org_id, request_id=request_id,
                model=model, body_bytes=100, max_tokens=100, characters=used[2],
            )  # fmt: skip
        async with write_session(api.ctx.sessions) as s:
            await token_charges.settle(
                s, clock=api.clock, policy=policy, org_id=t.org_id, request_id=request_id,
                model=model, held_cents=held, input_tokens=used[0], output_tokens=used[1],
                characters=used[2],
            )  # fmt: skip
    table = (await gy(api, "usage", key=t.key, columns=250)).stdout
    header = table.splitlines()[1]
    for column in ("model", "input_tokens", "output_tokens", "characters", "cost_cents"):
        assert column in header, table
    tiny = next(line for line in table.splitlines() if "tiny" in line)
    assert re.search(r"\b120000\b.*\b40000\b", tiny), table  # input, then output tokens
    voice = next(line for line in table.splitlines() if "voice" in line)
    assert re.search(r"\b4321\b", voice), table
    assert "tokens: 120000 input, 40000 output; characters: 4321" in table
    # Too narrow for a table: one line per field, nothing cut.
    narrow = (await gy(api, "usage", key=t.key, columns=60)).stdout
    assert re.search(r"^input_tokens\s+120000$", narrow, re.M), narrow
    assert re.search(r"^characters\s+4321$", narrow, re.M), narrow
    raw = json.loads((await gy(api, "usage", "--raw", key=t.key)).stdout)
    lines = {line["model"]: line for line in raw["data"]}
    assert (lines["tiny"]["input_tokens"], lines["tiny"]["output_tokens"]) == (120_000, 40_000)
    assert lines["voice"]["characters"] == 4321
