"""The real ``vastai`` CLI's billing history commands against gpuyard, on both databases:
``show invoices`` (deprecated, still shipped) and ``show invoices-v1`` with ``--invoices`` and
``--charges``, raw and as its tables, paged with ``--next-token``; a bad window is refused."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from gpuyard.server.controllers.metering import MeteringController
from tests.harness import Api
from tests.server.market import join_host
from tests.server.vastai_runner import Vastai

pytestmark = pytest.mark.slow
RTX = ("RTX 4090", 24564)
WINDOW = ("-s", "2026-01-01", "-e", "2026-01-03")


async def test_invoices_and_charges_through_the_cli(api: Api, tmp_path: Path) -> None:
    host = await join_host(api, [RTX])
    r = await api.client.put("/v1/admin/prices/rtx-4090", json={"cents_per_gpu_hour": 3600})
    assert r.status_code == 200, r.text
    t = await api.tenant("Payer")
    r = await api.client.post(
        f"/v1/admin/orgs/{t.org_id}/credits",
        json={"amount_cents": 5000, "description": "welcome"},
        headers={"Idempotency-Key": "welcome"},
    )
    assert r.status_code == 201, r.text
    offers = (await t.client.get(f"/v1/orgs/{t.org_id}/offers")).json()["data"]
    r = await t.client.post(f"/v1/orgs/{t.org_id}/vms", json={"offer_id": offers[0]["id"]})
    assert r.status_code == 201, r.text
    vm = r.json()
    [assigned] = (await host.beat())["workloads"]
    # A cent a second: 60 s charged on 1 January, 100 s on 2 January.
    api.clock.advance(seconds=datetime(2026, 1, 1, 23, 58, 59, tzinfo=UTC).timestamp()
                      - api.clock.now().timestamp())  # fmt: skip
    host.report(assigned["spec"]["id"], "running", started_at=api.clock.now().isoformat())
    await host.beat()
    meter = MeteringController(sessions=api.ctx.sessions, clock=api.clock, owner="m")
    for seconds in (60, 100):
        api.clock.advance(seconds=seconds)
        while await meter.step():
            pass
    vastai = Vastai(api.base_url, t.key, tmp_path / "home")
    number = (await vastai("show", "instances", "--raw")).json()[0]["id"]

    run = await vastai("show", "invoices", *WINDOW, "--raw")
    assert run.rc == 0, run
    rows = run.json()
    assert [(r["type"], r["amount"]) for r in rows] == [
        ("payment", -50.0), ("charge", 0.6), ("charge", 1.0),
    ]  # fmt: skip
    assert rows[0]["description"] == "welcome"
    assert {r["instance_id"] for r in rows[1:]} == {number}
    assert rows[1]["quantity"] == round(60 / 3600, 4)
    run = await vastai("show", "invoices", "-c", *WINDOW, "--raw")
    assert [r["amount"] for r in run.json()] == [0.6, 1.0]
    run = await vastai("show", "invoices", *WINDOW)
    assert run.rc == 0 and "Total: $-48.4" in run.out and "Current:" in run.out, run

    run = await vastai("show", "invoices-v1", "--charges", *WINDOW, "--raw")
    assert run.rc == 0, run
    page = run.json()
    assert (page["count"], page["total"], page["next_token"]) == (2, 2, None)
    assert [(c["type"], c["source"], c["amount"]) for c in page["results"]] == [
        ("instance", f"instance-{number}", 0.6), ("instance", f"instance-{number}", 1.0),
    ]  # fmt: skip
    run = await vastai("show", "invoices-v1", "--charges", *WINDOW, "--no-color")
    assert run.rc == 0 and "$0.600" in run.out and "$1.000" in run.out, run
    assert "Showing 2 of 2 results" in run.out
    run = await vastai("show", "invoices-v1", "-c", *WINDOW, "-f", "tree", "--no-color")
    assert run.rc == 0 and "GPU time: 100 GPU-seconds" in run.out, run
    # A page at a time, latest first.
    first = (
        await vastai("show", "invoices-v1", "-c", *WINDOW, "-l", "1", "--latest-first", "--raw")
    ).json()
    assert [c["amount"] for c in first["results"]] == [1.0] and first["next_token"]
    rest = await vastai(
        "show", "invoices-v1", "-c", *WINDOW, "-l", "1", "--latest-first",
        "--next-token", first["next_token"], "--raw",
    )  # fmt: skip
    assert [c["amount"] for c in rest.json()["results"]] == [0.6]
    assert rest.json()["next_token"] is None
    run = await vastai("show", "invoices-v1", "-c", "-ct", "serverless", *WINDOW, "--raw")
    assert run.json()["results"] == []

    run = await vastai("show", "invoices-v1", "--invoices", *WINDOW, "--raw")
    [credit] = run.json()["results"]
    assert (credit["type"], credit["amount"], credit["description"]) == ("credit", -50.0, "welcome")
    run = await vastai("show", "invoices-v1", "-i", *WINDOW, "--no-color")
    assert run.rc == 0 and "$50.00" in run.out and "welcome" in run.out, run
    run = await vastai("show", "invoices-v1", "-i", "-it", "stripe", *WINDOW, "--raw")
    assert run.json()["results"] == []

    # A window that ends before it starts: refused, in Vast's error shape.
    bad = await api.client_for(t.key).get(
        "/api/v0/charges/", params={"select_filters": '{"day": {"gte": 10, "lte": 5}}'}
    )
    assert bad.status_code == 400 and bad.json()["success"] is False, bad.text
    bad = await api.client_for(t.key).get("/api/v0/charges/", params={"select_filters": "{"})
    assert bad.status_code == 400, bad.text
    bad = await api.client_for(t.key).get("/api/v0/charges/", params={"after_token": "nope"})
    assert bad.status_code == 400, bad.text
    # Another org sees none of it.
    other = await api.tenant("Other")
    theirs = await api.client_for(other.key).get(
        "/api/v0/users/me/invoices", params={"sdate": 0, "edate": 1.8e9}
    )
    assert theirs.status_code == 200 and theirs.json()["invoices"] == [], theirs.text
    assert vm["id"]
