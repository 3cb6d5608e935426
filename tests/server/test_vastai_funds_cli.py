"""The real ``vastai`` CLI's credit and earnings commands against gpuyard, on both databases:
``transfer credit`` (two ledger entries in one transaction, never below zero, refusals that write
nothing, an ``Idempotency-Key`` that transfers once), ``show deposit`` (what an instance was
charged) and ``show earnings`` (what the operator's machines earned, by machine and by day)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.harness import Api, Tenant
from tests.server.market import join_host
from tests.server.test_metering import meter, run_pass, start_running
from tests.server.test_metering_workers_and_disk import add_worker
from tests.server.vastai_runner import Vastai

pytestmark = pytest.mark.slow
RTX = ("RTX 4090", 24564)
URL = "/api/v0/commands/transfer_credit/"


async def credit(api: Api, org_id: str, cents: int) -> None:
    r = await api.client.post(
        f"/v1/admin/orgs/{org_id}/credits",
        json={"amount_cents": cents},
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )
    assert r.status_code == 201, r.text


async def balance(t: Tenant) -> int:
    r = await t.client.get(f"/v1/orgs/{t.org_id}/billing")
    assert r.status_code == 200, r.text
    return int(r.json()["balance_cents"])


async def transfers(t: Tenant) -> list[dict[str, Any]]:
    r = await t.client.get(f"/v1/orgs/{t.org_id}/billing/ledger", params={"kind": "transfer"})
    assert r.status_code == 200, r.text
    return list(r.json()["data"])


async def test_transfer_credit_through_the_cli(api: Api, tmp_path: Path) -> None:
    payer, payee = await api.tenant("Payer"), await api.tenant("Payee")
    await credit(api, payer.org_id, 5000)
    vastai = Vastai(api.base_url, payer.key, tmp_path / "payer")
    payee_id = await Vastai(api.base_url, payee.key, tmp_path / "payee")("show", "user", "--raw")
    number, slug = payee_id.json()["id"], payee_id.json()["username"]

    run = await vastai("transfer", "credit", str(number), "12.34", "--skip")
    assert run.rc == 0 and f"Sent 12.34 to {number}" in run.out, run
    run = await vastai("transfer", "credit", "-r", slug, "-a", "0.66", "--skip")
    assert run.rc == 0 and f"Sent 0.66 to {slug}" in run.out, run
    assert (await balance(payer), await balance(payee)) == (5000 - 1300, 1300)
    sent, got = await transfers(payer), await transfers(payee)
    assert [e["amount_cents"] for e in sent] == [-1234, -66]
    assert [e["amount_cents"] for e in got] == [1234, 66]
    assert f"to {slug}" in sent[0]["description"] and "from payer" in got[0]["description"]
    user = (await vastai("show", "user", "--raw")).json()
    assert user["credit"] == 37.0

    # Refused, and nothing written: the CLI prints the status (it catches the error itself).
    refusals = [
        (["transfer", "credit", str(number), "0.001", "--skip"], "400"),  # a tenth of a cent
        (["transfer", "credit", "-r", slug, "--amount=-5", "--skip"], "400"),
        (["transfer", "credit", str(number), "37.01", "--skip"], "409"),  # more than it has
        (["transfer", "credit", "nobody-here", "1", "--skip"], "404"),
        (["transfer", "credit", "someone@example.com", "1", "--skip"], "400"),
        (["transfer", "credit", "payer", "1", "--skip"], "400"),  # itself
        (["transfer", "credit", str(number), "2000000000", "--skip"], "400"),
    ]
    for args, status in refusals:
        run = await vastai(*args)
        assert run.rc == 0 and f"Failed with error: {status} Client Error" in run.out, (args, run)
    assert (await balance(payer), await balance(payee)) == (3700, 1300)
    assert len(await transfers(payer)) == 2 and len(await transfers(payee)) == 2

    # The bodies say why, in Vast's shape.
    http = payer.client
    for body, status, code, words in [
        ({"recipient": str(number), "amount": 37.01}, 409, "insufficient_credit", "$37.00"),
        ({"recipient": str(number), "amount": 0.001}, 400, "invalid_request", "whole cents"),
        ({"recipient": str(number), "amount": True}, 422, "validation_error", "amount"),
        ({"recipient": str(number), "amount": "5"}, 422, "validation_error", "amount"),
        ({"recipient": "a@b.c", "amount": 1}, 400, "invalid_request", "email"),
        ({"recipient": str(number), "amount": 1, "sender": "42"}, 400, "invalid_request", "me"),
        ({"amount": 1}, 422, "validation_error", "recipient"),
    ]:
        r = await http.put(URL, json={"sender": "me", **body})
        assert r.status_code == status, (body, r.text)
        got_body = r.json()
        assert got_body["success"] is False and got_body["error"] == code, got_body
        assert words in got_body["msg"], got_body
    for amount in ("NaN", "Infinity", "1e400"):  # JSON that Python reads (requests never sends)
        raw = f'{{"recipient": "{slug}", "amount": {amount}}}'.encode()
        headers = {"Content-Type": "application/json"}
        r = await http.put(URL, content=raw, headers=headers)
        assert r.status_code == 400 and "whole cents" in r.json()["msg"], (amount, r.text)
    reader = await api.tenant("Reader", scopes=["org:read"])
    r = await api.client_for(reader.key).put(URL, json={"recipient": slug, "amount": 1})
    assert r.status_code == 403 and r.json()["success"] is False, r.text

    # An Idempotency-Key transfers once; the same key for another amount is refused.
    once = {"Idempotency-Key": "gift-1"}
    first = await http.put(URL, json={"recipient": slug, "amount": 5}, headers=once)
    again = await http.put(URL, json={"recipient": slug, "amount": 5}, headers=once)
    assert first.status_code == again.status_code == 200, (first.text, again.text)
    assert first.json()["transfer_id"] == again.json()["transfer_id"]
    assert first.json()["balance"] == again.json()["balance"] == 32.0
    other = await http.put(URL, json={"recipient": slug, "amount": 6}, headers=once)
    assert other.status_code == 409 and other.json()["error"] == "idempotency_key_reused"
    assert (await balance(payer), await balance(payee)) == (3200, 1800)

    # Each side has its event and sees the transfer in its invoices.
    for t, kind in ((payer, "billing.transfer_sent"), (payee, "billing.transfer_received")):
        r = await t.client.get(f"/v1/orgs/{t.org_id}/events", params={"type": kind})
        assert [e["data"]["amount_cents"] for e in r.json()["data"]] == [1234, 66, 500]
    now = api.clock.now().timestamp()
    window = ("-s", str(int(now - 60)), "-e", str(int(now + 60)))
    got_v1 = await Vastai(api.base_url, payee.key, tmp_path / "payee")(
        "show", "invoices-v1", "-i", *window, "--raw"
    )
    assert got_v1.rc == 0, got_v1
    assert [(i["type"], i["amount"]) for i in got_v1.json()["results"]] == [
        ("transfer", 12.34), ("transfer", 0.66), ("transfer", 5.0),
    ]  # fmt: skip
    sent_v1 = (await vastai("show", "invoices-v1", "-i", *window, "--raw")).json()["results"]
    assert [(i["type"], i["amount"]) for i in sent_v1] == [
        ("credit", -50.0), ("transfer", -12.34), ("transfer", -0.66), ("transfer", -5.0),
    ]  # fmt: skip


async def test_deposit_and_earnings_through_the_cli(api: Api, tmp_path: Path) -> None:
    host = await join_host(api, [RTX, RTX])
    r = await api.client.put("/v1/admin/prices/rtx-4090", json={"cents_per_gpu_hour": 3600})
    assert r.status_code == 200, r.text
    renter = await api.tenant("Renter")
    await credit(api, renter.org_id, 5000)
    offers = (await renter.client.get(f"/v1/orgs/{renter.org_id}/offers")).json()["data"]
    offer = next(o for o in offers if o["num_gpus"] == 1)
    r = await renter.client.post(
        f"/v1/orgs/{renter.org_id}/vms", json={"offer_id": offer["id"], "command": "sleep 600"}
    )
    assert r.status_code == 201, r.text
    [assigned] = (await host.beat())["workloads"]
    vm_workload = assigned["spec"]["id"]
    free = ({0, 1} - set(assigned["spec"]["gpu_indices"])).pop()
    worker = await add_worker(api, host.host_id, renter.org_id, [free])
    await host.beat()
    # A cent a second each: 60 s charged on 1 January, 100 s on 2 January.
    api.clock.advance(seconds=datetime(2026, 1, 1, 23, 58, 59, tzinfo=UTC).timestamp()
                      - api.clock.now().timestamp())  # fmt: skip
    for wid in (vm_workload, worker):
        await start_running(api, host, wid)
    m = meter(api)
    for seconds in (60, 100):
        api.clock.advance(seconds=seconds)
        await run_pass(m)

    vastai = Vastai(api.base_url, renter.key, tmp_path / "renter")
    [row] = (await vastai("show", "instances", "--raw")).json()
    number, machine = row["id"], row["machine_id"]
    run = await vastai("show", "deposit", str(number))
    assert run.rc == 0, run
    deposit = run.json()
    assert (deposit["instance_id"], deposit["deposit"], deposit["dph_total"]) == (number, 0, 36.0)
    assert (deposit["charged"], deposit["gpu_charged"], deposit["disk_charged"]) == (1.6, 1.6, 0)
    assert deposit["gpu_seconds"] == 160 and deposit["credit"] == 50 - 3.2
    assert deposit["last_charged"] == api.clock.now().timestamp()
    run = await vastai("show", "deposit", "999999")
    assert run.rc == 0 and "Failed with error 404: instance 999999 not found" in run.err, run
    stranger = await api.tenant("Stranger")
    r = await stranger.client.get(f"/api/v0/instances/balance/{number}/")
    assert r.status_code == 404 and r.json()["error"] == "instance_not_found", r.text

    # The operator's machines: the instance's charges and the worker's are their host's (each
    # charge records it: a worker's row is gone once it ends).
    ops = Vastai(api.base_url, api.operator_key, tmp_path / "operator")
    window = ("-s", "2026-01-01T00:00:00Z", "-e", "2026-01-02T12:00:00Z")
    run = await ops("show", "earnings", *window)
    assert run.rc == 0, run
    earned = run.json()
    jan1 = (date(2026, 1, 1) - date(1970, 1, 1)).days
    assert (earned["sday"], earned["eday"]) == (jan1, jan1 + 1)
    assert earned["summary"] == {"total_gpu": 3.2, "total_stor": 0, "total_bwu": 0, "total_bwd": 0}
    assert [(p["machine_id"], p["gpu_earn"]) for p in earned["per_machine"]] == [(machine, 3.2)]
    assert [(d["day"], d["gpu_earn"]) for d in earned["per_day"]] == [(jan1, 1.2), (jan1 + 1, 2.0)]
    assert earned["unattributed"]["gpu_earn"] == 0
    one = (await ops("show", "earnings", *window, "-m", str(machine), "--raw")).json()
    assert [(d["day"], d["gpu_earn"]) for d in one["per_day"]] == [(jan1, 1.2), (jan1 + 1, 2.0)]
    assert one["summary"]["total_gpu"] == 3.2 and one["unattributed"]["gpu_earn"] == 0
    run = await ops("show", "earnings", *window, "-m", "99999")
    assert run.rc == 0 and "Failed with error 404: machine 99999 not found" in run.err, run
    # A renter has no machines.
    theirs = (await vastai("show", "earnings", *window, "--raw")).json()
    assert (theirs["per_machine"], theirs["per_day"], theirs["summary"]["total_gpu"]) == ([], [], 0)
    run = await vastai("show", "earnings", *window, "-m", str(machine))
    assert run.rc == 0 and "Failed with error 404" in run.err, run
    # Without a window: yesterday, by the server's clock (2 January now).
    plain = (await api.client.get("/api/v0/users/me/machine-earnings")).json()
    assert [(d["day"], d["gpu_earn"]) for d in plain["per_day"]] == [(jan1, 1.2)]
    # Bad windows and machines: 400, in Vast's shape.
    for params in [
        {"sday": jan1 + 1, "eday": jan1},
        {"sday": "nan"},
        {"sday": "1e300"},
        {"sday": 0, "eday": 20000},
        {"machid": "abc"},
        {"machid": "-1"},
    ]:
        r = await api.client.get("/api/v0/users/me/machine-earnings", params=params)
        assert r.status_code == 400 and r.json()["success"] is False, (params, r.text)


async def test_concurrent_transfers_never_overdraw(api: Api) -> None:
    payer, payee = await api.tenant("Payer"), await api.tenant("Payee")
    await credit(api, payer.org_id, 5000)
    body = {"sender": "me", "recipient": payee.org_id, "amount": 10}
    answers = await asyncio.gather(*(payer.client.put(URL, json=body) for _ in range(12)))
    assert sorted(r.status_code for r in answers) == [200] * 5 + [409] * 7
    assert (await balance(payer), await balance(payee)) == (0, 5000)
    assert len(await transfers(payer)) == len(await transfers(payee)) == 5


async def test_transfers_both_ways_at_once_all_go_through(api: Api) -> None:
    """Each transfer locks both balances in one order: twelve each way at once never wait on each
    other in a cycle (a deadlock would fail some), and the sums come out exact."""
    a, b = await api.tenant("Alpha"), await api.tenant("Beta")
    await credit(api, a.org_id, 10_000)
    await credit(api, b.org_id, 10_000)
    there = {"sender": "me", "recipient": b.org_id, "amount": 1.25}
    back = {"sender": "me", "recipient": a.org_id, "amount": 2.5}
    answers = await asyncio.gather(
        *(a.client.put(URL, json=there) for _ in range(12)),
        *(b.client.put(URL, json=back) for _ in range(12)),
    )
    assert [r.status_code for r in answers] == [200] * 24, [r.text for r in answers]
    assert (await balance(a), await balance(b)) == (10_000 + 1500, 10_000 - 1500)
