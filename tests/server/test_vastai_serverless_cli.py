"""The real ``vastai`` CLI (the installed 1.9.1) drives serverless endpoints, workergroups and
templates against a real server, on both databases: every command the CLI has for them, and
what each one prints."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.harness import Api
from tests.server.market import join_host
from tests.server.serverless_kit import RTX, autoscaler, run_assigned, settle
from tests.server.vastai_runner import Vastai

pytestmark = pytest.mark.slow


def printed_dict(out: str, prefix: str) -> dict[str, object]:
    found = re.search(re.escape(prefix) + r"\s*(\{.*\})", out, re.S)
    assert found, out
    value = ast.literal_eval(found.group(1))
    assert isinstance(value, dict)
    return value


async def test_every_serverless_command(api: Api, tmp_path: Path) -> None:
    host = await join_host(api, [RTX, RTX])
    t = await api.tenant("Acme")
    other = await api.tenant("Other")
    vastai = Vastai(api.base_url, t.key, tmp_path / "home")

    made = await vastai(
        "create",
        "endpoint",
        "--endpoint_name",
        "llama",
        "--min_load",
        "10",
        "--cold_workers",
        "0",
        "--cold_mult",
        "1",
        "--max_workers",
        "4",
        "--inactivity_timeout",
        "60",
    )
    assert made.rc == 0, made
    created = printed_dict(made.out, "create endpoint")
    assert created["success"] is True and isinstance(created["result"], int)
    ep_id = int(created["result"])
    [row] = (await vastai("show", "endpoints", "--raw")).json()
    assert row["id"] == ep_id and row["endpoint_name"] == "llama" and "api_key" not in row
    assert row["min_load"] == 10.0 and row["max_workers"] == 4 and row["cold_workers"] == 0
    assert row["target_util"] == 0.9 and row["min_cold_load"] == 0.0  # the CLI's defaults
    assert row["endpoint_state"] == "active" and isinstance(row["user_id"], int)
    shown = await vastai("show", "endpoints")
    assert '"endpoint_name": "llama"' in shown.out

    changed = await vastai("update", "endpoint", str(ep_id), "--target_util", "0.8")
    assert "'success': True" in changed.out, changed
    [row] = (await vastai("show", "endpoints", "--raw")).json()
    assert row["target_util"] == 0.8 and row["min_load"] == 10.0  # null fields: unchanged
    bad = await vastai("update", "endpoint", str(ep_id), "--target_util", "1.5")
    assert "target_util" in bad.out + bad.err

    tpl = await vastai(
        "create",
        "template",
        "--name",
        "worker",
        "--image",
        "python",
        "--image_tag",
        "3.11",
        "--env",
        "-p 8000:8000 -e MODEL=tiny",
        "--onstart-cmd",
        "python -m worker",
        "--search_params",
        "gpu_name=RTX_4090",
    )
    assert "New Template:" in tpl.out, tpl
    template = printed_dict(tpl.out, "New Template:")
    hash_id = str(template["hash_id"])
    found = await vastai("search", "templates", f"hash_id=={hash_id}")
    assert hash_id in found.out and '"image": "python"' in found.out
    assert (await vastai("search", "templates", "hash_id==nope")).out.strip() == "[]"

    group = await vastai(
        "create",
        "workergroup",
        "--endpoint_name",
        "llama",
        "--template_hash",
        hash_id,
        "--search_params",
        "gpu_name=RTX_4090",
    )
    made_group = printed_dict(group.out, "workergroup create")
    assert made_group["success"] is True
    group_id = int(made_group["id"])
    [g] = (await vastai("show", "workergroups", "--raw")).json()
    assert g["id"] == group_id and g["endpoint_id"] == ep_id and g["template_hash"] == hash_id
    assert g["template_id"] == template["id"] and g["gpu_ram"] == 24.0 and g["test_workers"] == 3
    assert "verified=True" in g["search_params"]  # the CLI's default query, kept
    upd = await vastai("update", "workergroup", str(group_id), "--gpu_ram", "16")
    assert "'success': True" in upd.out, upd
    [g] = (await vastai("show", "workergroups", "--raw")).json()
    assert g["gpu_ram"] == 16.0 and g["template_hash"] == hash_id
    assert g["search_params"].startswith("gpu_name=RTX_4090")  # not replaced by the CLI's default

    ctl = autoscaler(api)
    await settle(ctl)  # min_load 10: one worker
    specs = await run_assigned(host)
    [spec] = specs.values()
    assert spec["image"] == "python:3.11" and spec["env"]["MODEL"] == "tiny"
    await settle(ctl)
    listed = await vastai("get", "endpt-workers", str(ep_id))
    assert re.search(r"id=\d+ status=loading gpu_name=RTX 4090 measured_perf=0.0", listed.out)
    logs = await vastai("get", "endpt-logs", str(ep_id))
    assert "endpoint.created" in logs.out and "worker.placed" in logs.out, logs
    detailed = await vastai("get", "endpt-logs", str(ep_id), "--level", "2", "--tail", "2")
    assert len(detailed.out.strip().splitlines()) == 2
    group_logs = await vastai("get", "wrkgrp-logs", str(group_id))
    assert "workergroup.created" in group_logs.out and "worker.loading" in group_logs.out

    theirs = Vastai(api.base_url, other.key, tmp_path / "other")
    assert (await theirs("show", "endpoints", "--raw")).json() == []
    for args in (("get", "endpt-workers"), ("delete", "endpoint"), ("get", "endpt-logs")):
        refused = await theirs(*args, str(ep_id))
        assert "404" in refused.out + refused.err or "not found" in refused.out + refused.err

    inferred = await vastai(
        "create", "workergroup", "--endpoint_id", str(ep_id), "--template_hash", hash_id
    )
    second = int(printed_dict(inferred.out, "workergroup create")["id"])
    groups = {x["id"]: x for x in (await vastai("show", "workergroups", "--raw")).json()}
    assert "gpu_name=RTX_4090" in groups[second]["search_params"].split()  # the template's
    assert "'success': True" in (await vastai("delete", "workergroup", str(second))).out

    in_use = await vastai("delete", "template", "--hash-id", hash_id)
    assert "409" in in_use.out, in_use  # the CLI prints the status only
    gone = await vastai("delete", "workergroup", str(group_id))
    assert "'success': True" in gone.out
    assert (await vastai("show", "workergroups", "--raw")).json() == []
    deleted = await vastai("delete", "template", "--hash-id", hash_id)
    assert "template deleted" in deleted.out
    assert "'success': True" in (await vastai("delete", "endpoint", str(ep_id))).out
    assert (await vastai("show", "endpoints", "--raw")).json() == []
    await settle(ctl)  # the endpoint's worker drains away
    await run_assigned(host)
    await settle(ctl)
    assert await ctl.step() == 0  # nothing left to do
