"""``gpuyard endpoints`` and ``gpuyard workergroups``, run as real subprocesses against a served
API: create, list as a table, get by name, update, workers, delete."""

from __future__ import annotations

import json

import pytest

from tests.cli.test_client_commands import gy
from tests.harness import Api

pytestmark = pytest.mark.slow


@pytest.fixture(params=["sqlite"])
def db_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_endpoint_and_workergroup_commands(api: Api) -> None:
    t = await api.tenant()
    made = json.loads(
        (
            await gy(
                api,
                "endpoints",
                "create",
                "chat",
                "--min-load",
                "5",
                "--cold-workers",
                "0",
                "--inactivity-timeout",
                "60",
                "--raw",
                key=t.key,
            )
        ).stdout
    )
    assert made["name"] == "chat" and made["min_load"] == 5.0 and made["cold_workers"] == 0
    table = (await gy(api, "endpoints", "list", key=t.key)).stdout
    assert made["id"] in table and "chat" in table and made["api_key"] in table
    got = json.loads((await gy(api, "endpoints", "get", "chat", "--raw", key=t.key)).stdout)
    assert got["id"] == made["id"]
    changed = await gy(
        api, "endpoints", "update", "chat", "--target-util", "0.5", "--raw", key=t.key
    )
    assert json.loads(changed.stdout)["target_util"] == 0.5
    bad = await gy(api, "endpoints", "update", "chat", "--target-util", "3", key=t.key, ok=False)
    assert bad.returncode != 0 and "target_util" in bad.stderr + bad.stdout

    group = json.loads(
        (
            await gy(
                api,
                "workergroups",
                "create",
                "chat",
                "--launch-args",
                "--image python",
                "--search-params",
                "gpu_name=RTX_4090",
                "--raw",
                key=t.key,
            )
        ).stdout
    )
    assert group["endpoint_id"] == made["id"] and group["image"] == "python"
    assert group["id"] in (await gy(api, "workergroups", "list", key=t.key)).stdout
    updated = await gy(
        api, "workergroups", "update", group["id"], "--gpu-ram", "12", "--raw", key=t.key
    )
    assert json.loads(updated.stdout)["gpu_ram"] == 12.0
    workers = await gy(api, "endpoints", "workers", "chat", "--raw", key=t.key)
    assert json.loads(workers.stdout) == []
    assert "deleted" in (await gy(api, "workergroups", "delete", group["id"], key=t.key)).stdout
    gone = json.loads((await gy(api, "endpoints", "delete", "chat", "--raw", key=t.key)).stdout)
    assert gone["deleting"] is True
    missing = await gy(api, "endpoints", "get", "chat", key=t.key, ok=False)
    assert missing.returncode != 0 and "chat" in missing.stderr + missing.stdout
