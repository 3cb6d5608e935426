"""The official ``vastai`` CLI (the installed 1.9.1), run unchanged against gpuyard on loopback.

Each command runs as a subprocess while the API keeps serving in the test's event loop; the CLI's
config, cache and state live in a temporary HOME, and ``VAST_URL`` points its start-up probe at
us (docs/vast-dialect.md). One database (SQLite) is enough here: tests/server/test_vast_api.py
covers both.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gpuyard.server.controllers.metering import MeteringController
from tests import databases
from tests.harness import Api, Tenant, start_api
from tests.server.market import join_host

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]  # ~30 CLI runs of a second or more each

VASTAI = Path(sys.executable).parent / "vastai"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq5Ew2e3Cm7m7b7xWJ1CqZbT1UnR1Wmx3x8m2f3D9o1 me@laptop"
RTX = ("RTX 4090", 24564)
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass
class Run:
    rc: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@dataclass
class Vastai:
    """``vastai --url <us> --api-key <key> --full <args>`` in a home of its own."""

    base_url: str
    key: str
    home: Path

    def env(self) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "HOME": str(self.home),
            "XDG_CONFIG_HOME": str(self.home / "config"),
            "XDG_CACHE_HOME": str(self.home / "cache"),
            "XDG_STATE_HOME": str(self.home / "state"),
            "VASTAI_NO_UPDATE_CHECK": "1",
            "VAST_URL": self.base_url,
            "COLUMNS": "250",
        }

    async def __call__(self, *args: str, key: str | None = None) -> Run:
        proc = await asyncio.create_subprocess_exec(
            str(VASTAI),
            "--url",
            self.base_url,
            "--api-key",
            key or self.key,
            "--full",
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.env(),
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
        assert proc.returncode is not None
        return Run(proc.returncode, _ANSI.sub("", out.decode()), _ANSI.sub("", err.decode()))


@pytest.fixture
async def api(sqlite_template: Path, tmp_path: Path) -> AsyncIterator[Api]:
    async with start_api(databases.sqlite_copy(sqlite_template, tmp_path), tmp_path) as running:
        yield running


def cli_for(api: Api, tenant: Tenant, tmp_path: Path) -> Vastai:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return Vastai(base_url=api.base_url, key=tenant.key, home=home)


def new_contract(run: Run) -> int:
    found = re.search(r"Started\. \{'success': True, 'new_contract': (\d+)\}", run.out)
    assert found, run
    return int(found.group(1))


async def test_offers_and_an_instance_from_rent_to_destroy(api: Api, tmp_path: Path) -> None:
    host = await join_host(api, [RTX] * 2)
    t = await api.tenant("Acme")
    vastai = cli_for(api, t, tmp_path)

    user = await vastai("show", "user")
    assert user.rc == 0 and "acme" in user.out and "0.00" in user.out, user  # credit
    raw_user = (await vastai("show", "user", "--raw")).json()
    assert raw_user["balance"] == 0.0 and raw_user["username"] == "acme"
    # the start-up probes went to us, not to console.vast.ai
    cache = json.loads((vastai.home / "cache/vastai/gpu_names_cache.json").read_text())
    assert "RTX 4090" in json.dumps(cache)
    assert (vastai.home / "config/vastai/vast_role").read_text().strip() == "client"

    table = await vastai("search", "offers")
    offers = (await vastai("search", "offers", "--raw")).json()
    assert sorted(o["num_gpus"] for o in offers) == [1, 2]
    for offer in offers:
        assert re.search(rf"\b{offer['id']}\b", table.out), table
    assert "RTX_4090" in table.out and "0.5000" in table.out
    query = ["search", "offers", "gpu_name=RTX_4090 num_gpus>=1", "-o", "dph-", "--raw"]
    assert [o["num_gpus"] for o in (await vastai(*query)).json()] == [2, 1]
    one_gpu = next(o for o in offers if o["num_gpus"] == 1)

    created = await vastai(
        "create",
        "instance",
        str(one_gpu["id"]),
        "--image",
        "pytorch/pytorch",
        "--env",
        "-e FOO=bar -p 8080:8080",
        "--disk",
        "40",
        "--label",
        "demo",
        "--onstart-cmd",
        "echo hello",
    )
    number = new_contract(created)
    [assigned] = (await host.beat())["workloads"]
    spec = assigned["spec"]
    assert spec["image"] == "pytorch/pytorch" and spec["onstart"] == "echo hello"
    assert spec["env"] == {"FOO": "bar"} and spec["port"] == 8080

    listed = await vastai("show", "instances")
    assert listed.rc == 0 and "Total: 1 instances" in listed.out, listed
    assert re.search(rf"\b{number}\b.*loading.*demo.*1x RTX 4090", listed.out), listed.out
    assert (await vastai("show", "instances", "-q")).out.split() == [str(number)]
    [row] = (await vastai("show", "instances", "--raw")).json()
    assert row["id"] == number and row["extra_env"] == {"FOO": "bar"}
    assert row["disk_space"] == 40.0 and row["label"] == "demo"

    host.report(spec["id"], "running", host_port=40001, started_at=api.clock.now().isoformat())
    await host.beat()
    shown = await vastai("show", "instance", str(number))
    assert re.search(rf"\b{number}\b.*running.*RTX_4090.*0\.5000.*pytorch/pytorch", shown.out)
    detail = (await vastai("show", "instance", str(number), "--raw")).json()
    assert detail["ports"] == {"8080/tcp": [{"HostIp": "0.0.0.0", "HostPort": "40001"}]}
    running = await vastai("show", "instances", "--status", "running")
    assert "Total: 1 instances" in running.out

    assert (await vastai("stop", "instance", str(number))).out == f"stopping instance {number}.\n"
    assert (await host.beat())["workloads"][0]["desired"] == "stopped"
    started = await vastai("start", "instance", str(number))
    assert started.out == f"starting instance {number}.\n"
    labeled = await vastai("label", "instance", str(number), "renamed")
    assert labeled.out == f"label for {number} set to renamed.\n"
    assert "renamed" in (await vastai("show", "instances")).out

    aborted = await vastai("destroy", "instance", str(number))  # no -y, no answer on stdin
    assert "Aborted." in aborted.out
    assert (await vastai("show", "instances", "-q")).out.split() == [str(number)]
    destroyed = await vastai("destroy", "instance", str(number), "-y")
    assert destroyed.out == f"destroying instance {number}.\n", destroyed
    assert (await vastai("show", "instances", "-q")).out.split() == []
    gone = await vastai("show", "instance", str(number))
    assert f"Failed with error 404: instance {number} not found" in gone.err, gone
    assert (await host.beat())["workloads"][0]["desired"] == "removed"


async def test_failures_print_the_servers_msg(api: Api, tmp_path: Path) -> None:
    await join_host(api, [RTX])
    t = await api.tenant()
    vastai = cli_for(api, t, tmp_path)
    [offer] = (await vastai("search", "offers", "--raw")).json()
    # fields the CLI knows but gpuyard does not filter on are accepted
    tolerated = await vastai("search", "offers", "duration>7 driver_version>=535.86.05", "--raw")
    assert [o["id"] for o in tolerated.json()] == [offer["id"]], tolerated
    bad_field = await vastai("search", "offers", "gpu_nam=RTX_4090")
    assert "Failed with error 400: unknown offer field 'gpu_nam'" in bad_field.err, bad_field

    unknown = await vastai("create", "instance", "999999999", "--image", "x")
    assert "Failed with error 404: no offer 999999999" in unknown.err, unknown
    new_contract(await vastai("create", "instance", str(offer["id"]), "--image", "x"))
    taken = await vastai("create", "instance", str(offer["id"]), "--image", "x")
    assert f"Failed with error 409: offer {offer['id']} is no longer available" in taken.err

    wrong_key = await vastai("show", "instances", key="vl_" + "x" * 43)
    assert "Failed with error 401" in wrong_key.err, wrong_key


async def test_ssh_keys_and_api_keys(api: Api, tmp_path: Path) -> None:
    t = await api.tenant()
    vastai = cli_for(api, t, tmp_path)

    created = await vastai("create", "ssh-key", KEY)
    assert "ssh-key created" in created.out and KEY in created.out, created
    path = await vastai("create", "ssh-key", "~/.ssh/id_ed25519.pub")
    assert "Failed with error 400" in path.err and "cat ~/.ssh/id_ed25519.pub" in path.err
    [key] = (await vastai("show", "ssh-keys", "--raw")).json()
    assert key["key"] == KEY
    assert KEY in (await vastai("show", "ssh-keys")).out
    deleted = await vastai("delete", "ssh-key", str(key["id"]))
    assert deleted.out.strip() == "{'success': True}", deleted
    assert (await vastai("show", "ssh-keys", "--raw")).json() == []

    keys = await vastai("show", "api-keys")
    assert "'name': 'first'" in keys.out and t.key not in keys.out, keys
    [listed] = (await vastai("show", "api-keys", "--raw")).json()["apikeys"]
    assert t.key.startswith(listed["prefix"]) and listed["status"] == "active"


async def test_show_user_has_the_ledger_balance_after_a_charge(api: Api, tmp_path: Path) -> None:
    host = await join_host(api, [RTX])
    t = await api.tenant("Payer")
    r = await api.client.post(
        f"/v1/admin/orgs/{t.org_id}/credits",
        json={"amount_cents": 1234},
        headers={"Idempotency-Key": "welcome"},
    )
    assert r.status_code == 201, r.text
    vastai = cli_for(api, t, tmp_path)
    assert (await vastai("show", "user", "--raw")).json()["credit"] == 12.34
    [offer] = (await vastai("search", "offers", "--raw")).json()
    new_contract(await vastai("create", "instance", str(offer["id"]), "--image", "x"))
    [assigned] = (await host.beat())["workloads"]
    host.report(assigned["spec"]["id"], "running", started_at=api.clock.now().isoformat())
    await host.beat()
    api.clock.advance(hours=3)  # 3 h at 50 cents an hour
    meter = MeteringController(sessions=api.ctx.sessions, clock=api.clock, owner="m")
    while await meter.step():
        pass
    user = await vastai("show", "user")
    assert user.rc == 0 and "10.84" in user.out, user
    assert (await vastai("show", "user", "--raw")).json()["balance"] == 10.84
