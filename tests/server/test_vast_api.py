"""The Vast dialect over HTTP, with the bodies the ``vastai`` 1.9.1 CLI sends
(docs/vast-dialect.md), on both databases."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from gpuyard.core.offer_fields import OFFER_FIELDS, UNREPORTED
from tests.harness import Api, Tenant
from tests.server.market import join_host

RTX = ("RTX 4090", 24564)
A100 = ("A100 80GB", 81920)
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq5Ew2e3Cm7m7b7xWJ1CqZbT1UnR1Wmx3x8m2f3D9o1 me@laptop"

CLI_SEARCH = {
    "verified": {"eq": True},
    "external": {"eq": False},
    "rentable": {"eq": True},
    "order": [["score", "desc"]],
    "type": "on-demand",
    "allocated_storage": 5.0,
}


def cli_create_body(**over: Any) -> dict[str, Any]:
    """What ``vastai create instance N --image I`` sends (all keys, always)."""
    body: dict[str, Any] = {
        "client_id": "me",
        "image": "pytorch/pytorch",
        "env": {},
        "price": None,
        "disk": 10,
        "label": None,
        "extra": None,
        "onstart": None,
        "image_login": None,
        "python_utf8": False,
        "lang_utf8": False,
        "use_jupyter_lab": False,
        "jupyter_dir": None,
        "force": False,
        "cancel_unavail": False,
        "template_hash_id": None,
        "user": None,
        "runtype": "ssh",
    }
    body.update(over)
    return body


async def search(t: Tenant, body: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    r = await t.client.post("/api/v0/bundles/", json=CLI_SEARCH if body is None else body)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"  # exactly: the CLI checks
    offers: list[dict[str, Any]] = r.json()["offers"]
    return offers


async def rent(t: Tenant, offer_id: int, **over: Any) -> int:
    r = await t.client.put(f"/api/v0/asks/{offer_id}/", json=cli_create_body(**over))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["success"] is True and isinstance(body["new_contract"], int)
    return int(body["new_contract"])


async def one(t: Tenant, instance_id: int) -> dict[str, Any]:
    r = await t.client.get(f"/api/v0/instances/{instance_id}/", params={"owner": "me"})
    assert r.status_code == 200, r.text
    row: dict[str, Any] = r.json()["instances"]
    return row


async def v1(t: Tenant, **params: Any) -> dict[str, Any]:
    query = {k: v if isinstance(v, str | int) else json.dumps(v) for k, v in params.items()}
    r = await t.client.get("/api/v1/instances/", params=query)
    assert r.status_code == 200, r.text
    page: dict[str, Any] = r.json()
    return page


def assert_vast_error(r: httpx.Response, status: int, code: str | None = None) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["success"] is False and body["msg"], body
    if code is not None:
        assert body["error"] == code, body


async def test_search_with_the_cli_default_body(api: Api) -> None:
    await join_host(api, [RTX] * 4 + [A100])
    t = await api.tenant()
    offers = await search(t)
    assert sorted((o["gpu_name"], o["num_gpus"]) for o in offers) == [
        ("A100 80GB", 1),
        ("RTX 4090", 1),
        ("RTX 4090", 2),
        ("RTX 4090", 4),
    ]
    price = api.ctx.settings.default_gpu_price_cents
    four = next(o for o in offers if o["num_gpus"] == 4)
    assert four["dph_total"] == 4 * price / 100 and isinstance(four["dph_total"], float)
    assert four["ask_contract_id"] == four["id"] and isinstance(four["id"], int)
    assert four["host_id"] == four["machine_id"] and isinstance(four["host_id"], int)
    assert four["gpu_ram"] == 24564 and four["gpu_total_ram"] == 4 * 24564
    assert four["cuda_max_good"] == 12.4 and four["driver_version"] == "550.54"
    assert four["verified"] is True and four["verification"] == "verified"
    assert four["rentable"] is True and four["rented"] is False and four["external"] is False
    assert four["cpu_cores"] == four["cpu_cores_effective"] == 32 * 4 / 5
    assert four["reliability"] is None and four["duration"] is None  # not reported: null
    for name in OFFER_FIELDS:  # every field of the query language is in the row
        assert name in four, name
    assert all(four[name] is None for name in UNREPORTED)
    for name in ["gpu_ram", "cpu_ram", "disk_space", "dph_total", "inet_up", "score"]:
        assert four[name] is None or isinstance(four[name], int | float), name

    # values arrive as strings from the CLI's string syntax
    big = await search(
        t, {**CLI_SEARCH, "num_gpus": {"gte": "2"}, "order": [["dph_total", "desc"]]}
    )
    assert [o["num_gpus"] for o in big] == [4, 2]
    named = await search(t, {"gpu_name": {"in": ["RTX_4090"]}, "limit": 1})
    assert [o["gpu_name"] for o in named] == ["RTX 4090"]
    assert len(await search(t, {"verification": {"eq": "verified"}})) == 4

    # the GET form of the REST examples, with and without the trailing slash
    for path in ["/api/v0/bundles/", "/api/v0/bundles"]:
        r = await t.client.get(path, params={"q": json.dumps({"gpu_name": "A100_80GB"})})
        assert [o["gpu_name"] for o in r.json()["offers"]] == ["A100 80GB"], r.text


async def test_fields_the_cli_knows_never_fail_a_search(api: Api) -> None:
    await join_host(api, [RTX])
    t = await api.tenant()
    # tolerated: accepted and ignored
    body = {**CLI_SEARCH, "duration": {"gt": 86400.0}, "driver_version": {"gte": 535086005}}
    assert len(await search(t, body)) == 1
    # never reported: a filter matches nothing, except asking for null
    assert await search(t, {**CLI_SEARCH, "cpu_ghz": {"gt": "2.0"}}) == []
    assert await search(t, {**CLI_SEARCH, "datacenter": {"eq": True}}) == []
    assert len(await search(t, {**CLI_SEARCH, "total_flops": {"eq": None}})) == 1
    assert len(await search(t, {**CLI_SEARCH, "order": [["dlperf_usd", "desc"]]})) == 1
    # an unknown field is a 400 whose msg names it
    r = await t.client.post("/api/v0/bundles/", json={"gpu_nam": {"eq": "x"}})
    assert_vast_error(r, 400, "invalid_request")
    assert "gpu_nam" in r.json()["msg"]
    for bad in [[1, 2], {"num_gpus": {"gte": "many"}}, {"order": "price-"}]:
        assert_vast_error(await t.client.post("/api/v0/bundles/", json=bad), 400)
    r = await t.client.post(
        "/api/v0/bundles/", content=b"{", headers={"Content-Type": "application/json"}
    )
    assert_vast_error(r, 400, "invalid_json")


async def test_rent_list_show_stop_start_label_destroy(api: Api) -> None:
    host = await join_host(api, [RTX] * 2)
    t = await api.tenant()
    two = next(o for o in await search(t) if o["num_gpus"] == 2)
    env = {"-p 8080:8080": "1", "HF_TOKEN": "abc", "-v /data:/data": "1"}
    number = await rent(t, two["id"], env=env, disk=40.0, label="train", onstart="echo hi")
    assert await search(t) == []  # every GPU is taken

    row = await one(t, number)
    assert row["id"] == number and row["machine_id"] == two["machine_id"]
    assert row["actual_status"] == "loading" and row["intended_status"] == "running"
    assert row["cur_state"] == "running" and row["next_state"] == "running"
    assert row["gpu_name"] == "RTX 4090" and row["num_gpus"] == 2
    assert row["dph_total"] == two["dph_total"]
    assert row["disk_space"] == 40.0 and row["label"] == "train"
    assert row["image_uuid"] == "pytorch/pytorch" and row["image_runtype"] == "ssh"
    assert row["onstart"] == "echo hi"
    assert row["extra_env"] == [["HF_TOKEN", "abc"]]  # -p/-v are not variables
    assert isinstance(row["start_date"], float)
    assert row["start_date"] == api.clock.now().timestamp()
    assert row["public_ipaddr"] == "127.0.0.1" and row["ports"] == {}
    assert row["ssh_host"] is None and row["gpu_util"] is None and row["uptime_mins"] is None

    [assigned] = (await host.beat())["workloads"]
    spec = assigned["spec"]
    assert spec["image"] == "pytorch/pytorch" and spec["onstart"] == "echo hi"
    assert spec["env"] == {"HF_TOKEN": "abc"} and spec["port"] == 8080
    host.report(spec["id"], "running", host_port=40001, started_at=api.clock.now().isoformat())
    await host.beat()
    api.clock.advance(seconds=90)
    row = await one(t, number)
    assert row["actual_status"] == "running"
    assert row["ports"] == {"8080/tcp": [{"HostIp": "0.0.0.0", "HostPort": "40001"}]}
    assert row["uptime_mins"] == 1.5

    r = await t.client.put(f"/api/v0/instances/{number}/", json={"state": "stopped"})
    assert r.status_code == 200 and r.json()["success"] is True, r.text
    assert (await one(t, number))["intended_status"] == "stopped"
    assert (await host.beat())["workloads"][0]["desired"] == "stopped"
    host.report(spec["id"], "stopped")
    await host.beat()
    row = await one(t, number)
    assert (row["actual_status"], row["cur_state"]) == ("stopped", "stopped")

    r = await t.client.put(f"/api/v0/instances/{number}/", json={"state": "running"})
    assert r.json() == {"success": True}
    assert (await host.beat())["workloads"][0]["desired"] == "running"

    r = await t.client.put(f"/api/v0/instances/{number}/", json={"label": "renamed"})
    assert r.json() == {"success": True}
    assert (await one(t, number))["label"] == "renamed"

    page = await v1(t, select_filters={}, order_by=[{"col": "id", "dir": "asc"}], limit=25)
    assert [i["id"] for i in page["instances"]] == [number]
    assert page["next_token"] is None and page["total_instances"] == 1
    assert page["label_counts"] == {"renamed": 1}
    old = (await t.client.get("/api/v0/instances", params={"owner": "me"})).json()
    assert [i["id"] for i in old["instances"]] == [number]
    filters = (await t.client.get("/api/v0/instances/filters/")).json()["filters"]
    assert filters == [
        {"actual_status": "loading", "verification": "verified", "gpu_name": "RTX 4090"}
    ]

    r = await t.client.request("DELETE", f"/api/v0/instances/{number}/", json={})
    assert r.status_code == 200 and r.json() == {"success": True}, r.text
    assert_vast_error(await t.client.get(f"/api/v0/instances/{number}/"), 404)
    assert (await v1(t))["instances"] == []
    assert (await host.beat())["workloads"][0]["desired"] == "removed"
    host.forget(spec["id"])
    await host.beat()
    assert len(await search(t)) == 2


async def test_create_body_becomes_the_workload_spec(api: Api) -> None:
    host = await join_host(api, [RTX] * 3)
    t = await api.tenant()
    offer = next(o for o in await search(t) if o["num_gpus"] == 1)
    # args mode: the CLI's --entrypoint (sent as onstart) is the entrypoint, args its arguments
    await rent(t, offer["id"], image=None, onstart="bash", runtype="args", args=["-c", "echo hi"])
    # a stopped instance, several -p mappings (the first TCP one counts)
    await rent(
        t,
        offer["id"],
        env={"-p 5000:5000/udp": "1", "-p 22:2222": "1", "-p 8080:8080": "1", "A": "1"},
        target_state="stopped",
    )
    specs = [w["spec"] for w in (await host.beat())["workloads"]]
    assert (specs[0]["command"], specs[0]["onstart"]) == ('exec bash "$@"', None)
    assert specs[0]["args"] == ["-c", "echo hi"] and specs[0]["image"] is None
    assert specs[1]["port"] == 2222 and specs[1]["env"] == {"A": "1"}
    rows = (await v1(t))["instances"]
    assert [r["intended_status"] for r in rows] == ["running", "stopped"]
    assert rows[0]["onstart"] == 'exec bash "$@"' and rows[0]["image_args"] == ["-c", "echo hi"]


async def test_v1_pages_filters_and_orders(api: Api) -> None:
    host = await join_host(api, [RTX] * 3 + [A100])
    t = await api.tenant()
    offers = await search(t)
    rtx = next(o for o in offers if o["gpu_name"] == "RTX 4090" and o["num_gpus"] == 1)
    a100 = next(o for o in offers if o["gpu_name"] == "A100 80GB")
    ids = [
        await rent(t, rtx["id"], label="a"),
        await rent(t, rtx["id"]),
        await rent(t, a100["id"], label="a"),
        await rent(t, rtx["id"], label="b"),
    ]
    first = await v1(t, limit=3)
    assert [i["id"] for i in first["instances"]] == ids[:3]
    assert first["next_token"] and first["total_instances"] == 4
    assert first["label_counts"] == {"a": 2, "": 1, "b": 1}
    rest = await v1(t, limit=3, after_token=first["next_token"])
    assert [i["id"] for i in rest["instances"]] == ids[3:] and rest["next_token"] is None

    desc = await v1(t, order_by=[{"col": "id", "dir": "desc"}], limit=2)
    assert [i["id"] for i in desc["instances"]] == ids[::-1][:2]
    more = await v1(t, order_by=[{"col": "id", "dir": "desc"}], after_token=desc["next_token"])
    assert [i["id"] for i in more["instances"]] == ids[::-1][2:]
    by_label = await v1(t, order_by=[{"col": "label", "dir": "desc"}])
    assert [i["id"] for i in by_label["instances"]] == [ids[3], ids[0], ids[2], ids[1]]

    unlabeled = await v1(t, select_filters={"label": {"in": [None]}})
    assert [i["id"] for i in unlabeled["instances"]] == [ids[1]]
    a100s = await v1(t, select_filters={"gpu_name": {"in": ["A100_80GB"]}})
    assert [i["id"] for i in a100s["instances"]] == [ids[2]]
    [w, *_] = (await host.beat())["workloads"]
    host.report(w["spec"]["id"], "running")
    await host.beat()
    running = await v1(t, select_filters={"actual_status": {"in": ["running"]}})
    assert running["total_instances"] == 1
    # an instance destroyed between two pages does not break paging
    page = await v1(t, limit=2)
    await t.client.request("DELETE", f"/api/v0/instances/{ids[1]}/", json={})
    after = await v1(t, limit=2, after_token=page["next_token"])
    assert [i["id"] for i in after["instances"]] == ids[2:]


async def test_errors_are_vast_shaped_and_change_nothing(api: Api) -> None:
    await join_host(api, [RTX])
    t = await api.tenant()
    [offer] = await search(t)
    cases: list[tuple[str, str, Any, int, str | None]] = [
        ("PUT", "/api/v0/asks/999999999/", cli_create_body(), 404, "no_such_ask"),
        ("PUT", f"/api/v0/asks/{offer['id'] + 1}/", cli_create_body(), 409, "offer_unavailable"),
        ("PUT", f"/api/v0/asks/{2**80}/", cli_create_body(), 404, "no_such_ask"),
        ("PUT", "/api/v0/asks/abc/", cli_create_body(), 422, "validation_error"),
        ("PUT", f"/api/v0/asks/{offer['id']}/", cli_create_body(image=5), 422, None),
        ("PUT", f"/api/v0/asks/{offer['id']}/", cli_create_body(env={"A": 1}), 422, None),
        ("PUT", f"/api/v0/asks/{offer['id']}/", cli_create_body(env={"1A": "x"}), 400, None),
        ("PUT", f"/api/v0/asks/{offer['id']}/", cli_create_body(env={"-p x": "1"}), 400, None),
        ("PUT", f"/api/v0/asks/{offer['id']}/", cli_create_body(env={"-p ²": "1"}), 400, None),
        ("PUT", f"/api/v0/asks/{offer['id']}/", cli_create_body(disk=-1), 422, None),
        ("PUT", f"/api/v0/asks/{offer['id']}/", cli_create_body(image=None), 400, None),
        ("PUT", f"/api/v0/asks/{offer['id']}/", [1], 422, None),
        ("PUT", f"/api/v0/asks/{offer['id']}/", None, 422, None),
        ("GET", "/api/v0/instances/12345/", None, 404, "instance_not_found"),
        ("GET", "/api/v0/instances/vm_nope/", None, 404, "instance_not_found"),
        ("GET", "/api/v0/instances/²/", None, 404, "instance_not_found"),
        ("DELETE", "/api/v0/ssh/²/", {}, 404, "ssh_key_not_found"),
        ("GET", "/api/v0/auth/apikeys/²/", None, 404, "api_key_not_found"),
        ("PUT", "/api/v0/instances/12345/", {"state": "running"}, 404, "instance_not_found"),
        ("PUT", "/api/v0/instances/12345/", {"state": "paused"}, 422, None),
        ("PUT", "/api/v0/instances/12345/", {}, 400, None),
        ("DELETE", "/api/v0/instances/12345/", {}, 404, "instance_not_found"),
        ("GET", "/api/v1/instances/?select_filters=nope", None, 400, None),
        ("GET", '/api/v1/instances/?select_filters={"x":{"in":[1]}}', None, 400, None),
        ("GET", '/api/v1/instances/?order_by=[{"col":"ports"}]', None, 400, None),
        ("GET", "/api/v1/instances/?after_token=zz", None, 400, "invalid_cursor"),
        ("GET", "/api/v1/instances/?limit=0", None, 422, None),
        ("DELETE", "/api/v0/ssh/77/", {}, 404, "ssh_key_not_found"),
        ("GET", "/api/v0/nothing/", None, 404, "not_found"),
    ]
    for method, path, body, status, code in cases:
        r = await t.client.request(method, path, json=body)
        assert r.status_code == status, (method, path, body, r.text)
        assert_vast_error(r, status, code)
    assert (await v1(t))["instances"] == []
    assert len(await search(t)) == 1
    no_key = api.client_for(None)
    for path in ["/api/v0/users/current", "/api/v1/instances/", "/api/v0/bundles/"]:
        assert_vast_error(await no_key.get(path), 401)


async def test_instances_are_org_private(api: Api) -> None:
    await join_host(api, [RTX])
    a = await api.tenant("A")
    b = await api.tenant("B")
    number = await rent(a, (await search(a))[0]["id"])
    for method, body in [("GET", None), ("PUT", {"state": "stopped"}), ("DELETE", {})]:
        r = await b.client.request(method, f"/api/v0/instances/{number}/", json=body)
        assert_vast_error(r, 404, "instance_not_found")
    assert (await v1(b))["instances"] == []
    assert (await b.client.get("/api/v0/instances/")).json()["instances"] == []
    assert (await one(a, number))["intended_status"] == "running"
    key = (await a.client.post("/api/v0/ssh/", json={"ssh_key": KEY})).json()
    assert_vast_error(await b.client.request("DELETE", f"/api/v0/ssh/{key['id']}/", json={}), 404)
    assert (await b.client.get("/api/v0/ssh/")).json() == []


async def test_reads_need_org_read_and_writes_org_write(api: Api) -> None:
    await join_host(api, [RTX])
    reader = await api.tenant("R", scopes=["org:read"])
    [offer] = await search(reader)
    assert (await reader.client.get("/api/v0/users/current")).status_code == 200
    r = await reader.client.put(f"/api/v0/asks/{offer['id']}/", json=cli_create_body())
    assert_vast_error(r, 403, "insufficient_scope")
    assert_vast_error(await reader.client.post("/api/v0/ssh/", json={"ssh_key": KEY}), 403)
    inference = await api.tenant("I", scopes=["inference"])
    for path in ["/api/v0/users/current", "/api/v1/instances/", "/api/v0/auth/apikeys/"]:
        assert_vast_error(await inference.client.get(path), 403, "insufficient_scope")
    assert_vast_error(await inference.client.post("/api/v0/bundles/", json={}), 403)


async def test_ssh_keys(api: Api) -> None:
    host = await join_host(api, [RTX])
    t = await api.tenant()
    r = await t.client.post("/api/v0/ssh/", json={"ssh_key": KEY})
    assert r.status_code == 200, r.text
    created = r.json()
    assert created["success"] is True and isinstance(created["id"], int)
    assert created["key"] == KEY and created["fingerprint"].startswith("SHA256:")
    assert_vast_error(await t.client.post("/api/v0/ssh/", json={"ssh_key": KEY}), 409)
    r = await t.client.post("/api/v0/ssh/", json={"ssh_key": "~/.ssh/id_ed25519.pub"})
    assert_vast_error(r, 400)
    assert "cat ~/.ssh/id_ed25519.pub" in r.json()["msg"]
    assert_vast_error(await t.client.post("/api/v0/ssh/", json={"ssh_key": "ssh-rsa x y"}), 400)
    listed = (await t.client.get("/api/v0/ssh/")).json()
    assert [(k["id"], k["key"]) for k in listed] == [(created["id"], KEY)]
    await rent(t, (await search(t))[0]["id"])
    [a] = (await host.beat())["workloads"]
    assert a["spec"]["ssh_authorized_keys"] == [KEY]
    r = await t.client.request("DELETE", f"/api/v0/ssh/{created['id']}/", json={})
    assert r.json() == {"success": True}
    assert (await t.client.get("/api/v0/ssh/")).json() == []


async def test_api_keys_never_show_secrets(api: Api) -> None:
    t = await api.tenant()
    r = await t.client.post(f"/v1/orgs/{t.org_id}/api-keys", json={"name": "ci"})
    other = r.json()
    r = await t.client.get("/api/v0/auth/apikeys/")
    assert r.status_code == 200, r.text
    keys = r.json()["apikeys"]
    assert [k["name"] for k in keys] == ["first", "ci"]
    assert all(isinstance(k["id"], int) for k in keys)
    assert t.key not in r.text and other["key"] not in r.text
    assert "hash" not in r.text and t.key[:20] not in r.text
    assert keys[1]["key_id"] == other["id"] and keys[1]["prefix"] == other["prefix"]
    assert keys[1]["scopes"] == ["org:write"] and keys[1]["status"] == "active"
    number = keys[1]["id"]
    got = (await t.client.get(f"/api/v0/auth/apikeys/{number}/")).json()
    assert got["key_id"] == other["id"]
    r = await t.client.request("DELETE", f"/api/v0/auth/apikeys/{number}/", json={})
    assert r.json() == {"success": True}
    revoked = api.client_for(other["key"])
    assert_vast_error(await revoked.get("/api/v0/users/current"), 401)
    assert (await t.client.get(f"/api/v0/auth/apikeys/{number}/")).json()["status"] == "revoked"


async def test_show_user_and_gpu_names(api: Api) -> None:
    await join_host(api, [RTX, A100])
    t = await api.tenant("Acme Labs")
    r = await t.client.get("/api/v0/users/current")
    assert r.status_code == 200, r.text
    user = r.json()
    assert isinstance(user["id"], int) and user["username"] == "acme-labs"
    assert user["fullname"] == "Acme Labs" and user["org_id"] == t.org_id
    assert user["balance"] == 0.0 and user["credit"] == 0.0  # no billing yet
    assert user["host_agreement_accepted"] is False
    assert t.key not in r.text
    names = await api.client_for(None).get("/api/v0/gpu_names/unique/")
    assert names.json() == {"gpu_names": ["A100 80GB", "RTX 4090"]}


async def test_two_rentals_of_the_last_gpu(api: Api) -> None:
    await join_host(api, [RTX])
    a = await api.tenant("A")
    b = await api.tenant("B")
    [offer] = await search(a)
    results = await asyncio.gather(
        *[
            c.client.put(f"/api/v0/asks/{offer['id']}/", json=cli_create_body())
            for c in (a, b, a, b)
        ]
    )
    assert sorted(r.status_code for r in results) == [200, 409, 409, 409]
    for loser in (r for r in results if r.status_code == 409):
        assert_vast_error(loser, 409, "offer_unavailable")
    rows = [*(await v1(a))["instances"], *(await v1(b))["instances"]]
    assert len(rows) == 1
    winner = next(r for r in results if r.status_code == 200).json()
    assert rows[0]["id"] == winner["new_contract"]
