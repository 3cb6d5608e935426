"""Credits, the balance, the ledger and usage over the API, on both databases; bad input changes
nothing; the Vast dialect's user shows the balance."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from tests.harness import Api, Tenant
from tests.server.test_metering import meter, rented, run_pass, start_running


async def credit(api: Api, org_id: str, cents: object, key: str | None = "k1", **body: object):  # type: ignore[no-untyped-def]
    headers = {"Idempotency-Key": key} if key else {}
    return await api.client.post(
        f"/v1/admin/orgs/{org_id}/credits",
        json={"amount_cents": cents, **body},
        headers=headers,
    )


async def balance(t: Tenant) -> int:
    r = await t.client.get(f"/v1/orgs/{t.org_id}/billing")
    assert r.status_code == 200, r.text
    value = r.json()["balance_cents"]
    assert type(value) is int
    return value


async def test_a_credit_is_added_once_per_idempotency_key(api: Api) -> None:
    t = await api.tenant()
    first = await credit(api, t.org_id, 2500, description="welcome")
    assert first.status_code == 201, first.text
    assert first.json()["amount_cents"] == 2500 and first.json()["kind"] == "credit"
    again = await credit(api, t.org_id, 2500, description="welcome")
    assert again.status_code == 201 and again.json()["id"] == first.json()["id"]
    assert again.headers.get("idempotent-replayed") == "true"
    # Concurrent duplicates of a new key: still one credit.
    results = await asyncio.gather(*(credit(api, t.org_id, 100, key="burst") for _ in range(8)))
    assert {r.status_code for r in results} <= {201, 409}
    assert await balance(t) == 2600
    reused = await credit(api, t.org_id, 999, key="k1")
    assert reused.status_code == 409
    assert await balance(t) == 2600
    page = (await t.client.get(f"/v1/orgs/{t.org_id}/billing/ledger")).json()
    assert [e["amount_cents"] for e in page["data"]] == [2500, 100]
    events = (await t.client.get(f"/v1/orgs/{t.org_id}/events?type=billing.credited")).json()
    assert len(events["data"]) == 2


async def test_bad_credits_are_refused_and_write_nothing(api: Api) -> None:
    t = await api.tenant()
    cases = [
        (await credit(api, t.org_id, 500, key=None), 400, "idempotency_key_required"),
        (await credit(api, t.org_id, -5, key="a"), 400, None),
        (await credit(api, t.org_id, 0, key="b"), 400, None),
        (await credit(api, t.org_id, 1.5, key="c"), 422, None),
        (await credit(api, t.org_id, "100", key="d"), 422, None),
        (await credit(api, t.org_id, True, key="e"), 422, None),
        (await credit(api, t.org_id, 10**15, key="f"), 400, None),
        (await credit(api, t.org_id, 100, key="g", currency="eur"), 400, "invalid_currency"),
        (await credit(api, t.org_id, 100, key="h", bonus=1), 422, None),
        (await credit(api, "org_doesnotexist0000000000", 100, key="i"), 404, None),
    ]
    for r, status, code in cases:
        assert r.status_code == status, r.text
        if code:
            assert r.json()["code"] == code
    r = await api.client.post(
        f"/v1/admin/orgs/{t.org_id}/credits",
        content=b"{not json",
        headers={"Idempotency-Key": "j", "Content-Type": "application/json"},
    )
    assert r.status_code in (400, 422)
    # Only the operator credits; a tenant's key is refused.
    r = await t.client.post(
        f"/v1/admin/orgs/{t.org_id}/credits",
        json={"amount_cents": 100},
        headers={"Idempotency-Key": "mine"},
    )
    assert r.status_code == 403
    assert await balance(t) == 0
    assert (await t.client.get(f"/v1/orgs/{t.org_id}/billing/ledger")).json()["data"] == []


async def test_another_orgs_billing_is_not_found(api: Api) -> None:
    a, b = await api.tenant("A"), await api.tenant("B")
    for path in ["billing", "billing/ledger", "usage"]:
        r = await a.client.get(f"/v1/orgs/{b.org_id}/{path}")
        assert r.status_code == 404, (path, r.text)


async def test_the_ledger_pages_and_filters(api: Api) -> None:
    t = await api.tenant()
    for i in range(45):
        assert (await credit(api, t.org_id, i + 1, key=f"n{i}")).status_code == 201
        api.clock.advance(seconds=1)
    url = f"/v1/orgs/{t.org_id}/billing/ledger"
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, object] = {"limit": 20}
        if cursor:
            params["cursor"] = cursor
        page = (await t.client.get(url, params=params)).json()
        seen += [e["amount_cents"] for e in page["data"]]
        if not page["has_more"]:
            break
        cursor = page["next_cursor"]
    assert seen == list(range(1, 46))
    since = (api.clock.now() - timedelta(seconds=10)).isoformat()
    recent = (await t.client.get(url, params={"since": since, "limit": 100})).json()["data"]
    assert [e["amount_cents"] for e in recent] == list(range(36, 46))
    assert (await t.client.get(url, params={"kind": "usage"})).json()["data"] == []
    assert (await t.client.get(url, params={"kind": "bogus"})).status_code == 400
    assert (await t.client.get(url, params={"since": "yesterday"})).status_code == 422
    assert await balance(t) == sum(range(1, 46))


async def test_usage_and_the_vast_user_show_what_ran(api: Api) -> None:
    t, host, vm, wid = await rented(api)
    assert (await credit(api, t.org_id, 1000)).status_code == 201
    m = meter(api)
    await start_running(api, host, wid)
    api.clock.advance(hours=10)  # 10 h at 7 cents: 70 cents
    await run_pass(m)
    assert await balance(t) == 1000 - 70
    usage = (await t.client.get(f"/v1/orgs/{t.org_id}/usage")).json()
    assert usage["gpu_seconds"] == 36_000 and usage["cost_cents"] == 70
    [line] = usage["data"]
    assert line["resource_id"] == vm["id"] and line["resource_kind"] == "instance"
    billing = (await t.client.get(f"/v1/orgs/{t.org_id}/billing")).json()
    assert billing["month_to_date_spend_cents"] == 70
    ledger = (await t.client.get(f"/v1/orgs/{t.org_id}/billing/ledger?kind=usage")).json()
    assert sum(e["amount_cents"] for e in ledger["data"]) == -70
    by_vm = await t.client.get(
        f"/v1/orgs/{t.org_id}/billing/ledger", params={"resource_id": vm["id"]}
    )
    assert [e["kind"] for e in by_vm.json()["data"]] == ["usage"]
    user = (await t.client.get("/api/v0/users/current/")).json()
    assert user["credit"] == 9.30 and user["balance"] == 9.30
