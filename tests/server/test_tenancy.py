"""Hosts that cannot isolate run only the operator's workloads, unless the operator trusts them:
offer search (both dialects), renting, cluster placement, and the trust setting itself."""

from __future__ import annotations

from typing import Any

import pytest

from gpuyard.core.hosts import isolates, takes_org
from gpuyard.server.controllers.clusters import ClusterController, Probe, ProbeResult
from tests.harness import Api, Tenant
from tests.server.market import FakeHost, join_host

RTX = ("RTX 4090", 24564)
NOT_ISOLATING = {"isolates": False, "runtime": "process", "reason": "bubblewrap is not installed"}


async def _offers(client: Any, org_id: str) -> list[dict[str, Any]]:
    r = await client.get(f"/v1/orgs/{org_id}/offers")
    assert r.status_code == 200, r.text
    found: list[dict[str, Any]] = r.json()["data"]
    return found


async def _rent(client: Any, org_id: str, offer_id: int) -> Any:
    return await client.post(f"/v1/orgs/{org_id}/vms", json={"offer_id": offer_id, "command": "x"})


async def _trust(api: Api, host: FakeHost, trusted: Any) -> Any:
    return await api.client.patch(f"/v1/admin/hosts/{host.host_id}", json={"trusted": trusted})


def test_the_rule() -> None:
    yes = {"isolation": {"isolates": True, "runtime": "process"}}
    for facts in ({}, {"isolation": None}, {"isolation": NOT_ISOLATING}, {"isolation": "yes"}):
        assert not isolates(facts)
        assert not takes_org(facts=facts, trusted=False, org_is_operator=False)
        assert takes_org(facts=facts, trusted=True, org_is_operator=False)
        assert takes_org(facts=facts, trusted=False, org_is_operator=True)
    assert isolates(yes) and takes_org(facts=yes, trusted=False, org_is_operator=False)


async def test_a_host_that_cannot_isolate_offers_itself_to_the_operator_only(api: Api) -> None:
    host = await join_host(api, [RTX, RTX], isolation=NOT_ISOLATING)
    t = await api.tenant()
    assert await _offers(t.client, t.org_id) == []
    vast = await t.client.post("/api/v0/bundles/", json={})
    assert vast.status_code == 200 and vast.json()["offers"] == []
    mine = await _offers(api.client, api.operator_org)
    assert len(mine) == 2
    refused = await _rent(t.client, t.org_id, mine[0]["id"])  # the id is known; still no offer
    assert refused.status_code == 404 and refused.json()["code"] == "no_such_ask"
    got = (await api.client.get(f"/v1/admin/hosts/{host.host_id}")).json()
    assert (got["isolates"], got["trusted"]) == (False, False)
    assert got["facts"]["isolation"]["reason"] == "bubblewrap is not installed"

    rented = await _rent(api.client, api.operator_org, mine[0]["id"])
    assert rented.status_code == 201, rented.text


async def test_trusting_a_host_opens_it_to_every_org_and_is_an_event(api: Api) -> None:
    host = await join_host(api, [RTX], isolation=NOT_ISOLATING)
    t = await api.tenant()
    r = await _trust(api, host, True)
    assert r.status_code == 200 and r.json()["trusted"] is True
    [offer] = await _offers(t.client, t.org_id)
    assert (await _rent(t.client, t.org_id, offer["id"])).status_code == 201
    assert (await _trust(api, host, False)).json()["trusted"] is False
    assert await _offers(t.client, t.org_id) == []  # the rented GPU aside, nothing new for them
    events = await api.client.get(f"/v1/orgs/{api.operator_org}/events")
    kinds = [e["type"] for e in events.json()["data"] if e.get("subject_id") == host.host_id]
    assert "host.trusted" in kinds and "host.untrusted" in kinds


@pytest.mark.parametrize("bad", [None, "yes", 1])
async def test_a_bad_trusted_value_is_refused_and_changes_nothing(api: Api, bad: Any) -> None:
    host = await join_host(api, [RTX], isolation=NOT_ISOLATING)
    r = await _trust(api, host, bad)
    assert r.status_code in (400, 422) and "error" in r.json() and "code" in r.json()
    assert (await api.client.get(f"/v1/admin/hosts/{host.host_id}")).json()["trusted"] is False


async def test_an_isolating_host_offers_itself_to_every_org(api: Api) -> None:
    host = await join_host(api, [RTX])
    t = await api.tenant()
    assert len(await _offers(t.client, t.org_id)) == 1
    got = (await api.client.get(f"/v1/admin/hosts/{host.host_id}")).json()
    assert (got["isolates"], got["trusted"]) == (True, False)


class _Healthy:
    async def __call__(self, probe: Probe) -> ProbeResult:
        return ProbeResult(healthy=True, models=None)


async def _cluster(t: Tenant, name: str) -> str:
    body = {"name": name, "gpu_type": "rtx-4090", "replicas": 1, "container": "x"}
    r = await t.client.post("/v1/clusters", json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def _replicas_on(host: FakeHost) -> list[str]:
    beat = await host.beat()
    return sorted(a["spec"]["labels"]["gpuyard.org"] for a in beat["workloads"])


async def test_replicas_are_placed_by_the_same_rule(api: Api) -> None:
    closed = await join_host(api, [RTX], name="closed", isolation=NOT_ISOLATING)
    ctl = ClusterController(
        sessions=api.ctx.sessions, clock=api.clock, owner="t", prober=_Healthy()
    )
    t = await api.tenant()
    operator = Tenant(org_id=api.operator_org, key=api.operator_key, client=api.client)
    await _cluster(t, "theirs")
    await ctl.step()
    assert await _replicas_on(closed) == []  # the tenant's replica waits for a host
    await _cluster(operator, "ours")
    await ctl.step()
    assert await _replicas_on(closed) == [api.operator_org]

    open_host = await join_host(api, [RTX], name="open")
    await ctl.step()
    assert await _replicas_on(open_host) == [t.org_id]


async def test_a_host_that_stops_isolating_stops_offering_to_tenants_at_its_next_heartbeat(
    api: Api,
) -> None:
    host = await join_host(api, [RTX])
    t = await api.tenant()
    assert len(await _offers(t.client, t.org_id)) == 1
    host.facts = {**host.facts, "isolation": NOT_ISOLATING}  # restarted with --sandbox off
    await host.beat()
    assert await _offers(t.client, t.org_id) == []
    assert len(await _offers(api.client, api.operator_org)) == 1
    host.facts = {**host.facts, "isolation": {"isolates": True, "runtime": "process"}}
    await host.beat()
    assert len(await _offers(t.client, t.org_id)) == 1
