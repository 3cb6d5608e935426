"""The event log: written with each change, filtered by type and time, org-private."""

from __future__ import annotations

from datetime import timedelta

from tests.harness import Api


async def test_changes_write_events_in_order(api: Api) -> None:
    t = await api.tenant()
    key = (await t.client.post(f"/v1/orgs/{t.org_id}/api-keys", json={"name": "k"})).json()
    await t.client.delete(f"/v1/orgs/{t.org_id}/api-keys/{key['id']}")
    await t.client.patch(f"/v1/orgs/{t.org_id}", json={"name": "Acme Corp"})
    events = (await t.client.get(f"/v1/orgs/{t.org_id}/events")).json()["data"]
    types = [e["type"] for e in events]
    assert types == [
        "org.created",
        "api_key.created",
        "api_key.created",
        "api_key.revoked",
        "org.updated",
    ]
    assert events[3]["subject_id"] == key["id"]
    assert all(e["org_id"] == t.org_id and e["id"].startswith("evt_") for e in events)
    assert all(key["key"] not in str(e) for e in events)


async def test_filter_by_type_and_time(api: Api) -> None:
    t = await api.tenant()
    start = api.clock.now()
    api.clock.advance(minutes=10)
    await t.client.patch(f"/v1/orgs/{t.org_id}", json={"name": "Later"})
    url = f"/v1/orgs/{t.org_id}/events"
    later = await t.client.get(url, params={"since": (start + timedelta(minutes=5)).isoformat()})
    assert [e["type"] for e in later.json()["data"]] == ["org.updated"]
    before = await t.client.get(url, params={"until": (start + timedelta(minutes=5)).isoformat()})
    assert "org.updated" not in [e["type"] for e in before.json()["data"]]
    typed = await t.client.get(url, params=[("type", "org.created"), ("type", "org.updated")])
    assert [e["type"] for e in typed.json()["data"]] == ["org.created", "org.updated"]
    bad = await t.client.get(url, params={"since": "yesterday"})
    assert bad.status_code == 422
    naive = await t.client.get(url, params={"since": "2026-01-01T00:00:00"})
    assert naive.status_code == 422
    inverted = await t.client.get(
        url, params={"since": start.isoformat(), "until": (start - timedelta(1)).isoformat()}
    )
    assert inverted.status_code == 400


async def test_events_are_org_private(api: Api) -> None:
    a = await api.tenant("A")
    b = await api.tenant("B")
    r = await a.client.get(f"/v1/orgs/{b.org_id}/events")
    assert r.status_code == 404
    mine = (await a.client.get(f"/v1/orgs/{a.org_id}/events")).json()["data"]
    assert {e["org_id"] for e in mine} == {a.org_id}


async def test_a_rolled_back_change_leaves_no_event(api: Api) -> None:
    t = await api.tenant(scopes=["org:write"])
    before = len((await t.client.get(f"/v1/orgs/{t.org_id}/events")).json()["data"])
    r = await t.client.post(f"/v1/orgs/{t.org_id}/api-keys", json={"scopes": ["operator"]})
    assert r.status_code == 400
    after = len((await t.client.get(f"/v1/orgs/{t.org_id}/events")).json()["data"])
    assert before == after
