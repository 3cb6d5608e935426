"""The last 5xx the probes found, pinned on both databases.

Dates at the edge of the calendar: ``9999-12-31T23:59:59-14:00`` is a valid RFC 3339 time whose
UTC is in the year 10000, which Python cannot represent: converting it for the database raised
``OverflowError`` (500). Every time a request carries is now taken in UTC as it is validated, and
one outside years 1-9999 in UTC is a 422 naming the field.

A NUL or an unpaired surrogate escaped inside JSON carried by a query parameter (``?q=`` of the
offer searches): the request's own text check sees only ``%00`` in a query, so the character
reached Postgres (500). Offer query values now refuse it (400).

An ``in`` list of 40,000 values: one bound parameter each, past Postgres' 32,767 (500). An offer
query's lists may hold 1,000 values in all (400 ``too_many_values``).

Found by the property test of those parameters (test_query_json_property.py): an integer beyond
every float (JSON's integers are unbounded) in an offer query's number or ``allocated_storage``,
or in a Vast ``after_token``, raised ``OverflowError`` (500); now a 400.
"""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from gpuyard.core.offer_query import MAX_LISTED_VALUES
from tests.harness import Api
from tests.server.market import join_host

PAST_9999 = "9999-12-31T23:59:59-14:00"  # 10000-01-01T13:59:59Z
BEFORE_1 = "0001-01-01T00:00:00+14:00"  # 0000-12-31T10:00:00Z
LAST = "9999-12-31T23:59:59Z"


def assert_time_refused(r: httpx.Response, param: str) -> None:
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["code"] == "validation_error" and body["param"] == param, body
    assert "outside the times that can be stored" in body["error"]
    assert body["request_id"] == r.headers["x-request-id"]


@pytest.mark.parametrize("value", [PAST_9999, BEFORE_1])
@pytest.mark.parametrize("param", ["since", "until"])
async def test_events_at_the_edge_of_the_calendar_are_422(api: Api, param: str, value: str) -> None:
    t = await api.tenant()
    r = await t.client.get(f"/v1/orgs/{t.org_id}/events", params={param: value})
    assert_time_refused(r, param)


async def test_events_up_to_the_last_storable_instant_are_fine(api: Api) -> None:
    t = await api.tenant()
    r = await t.client.get(f"/v1/orgs/{t.org_id}/events", params={"since": LAST})
    assert r.status_code == 200 and r.json()["data"] == [], r.text
    r = await t.client.get(f"/v1/orgs/{t.org_id}/events", params={"until": LAST})
    assert r.status_code == 200 and r.json()["data"], r.text  # the org's creation, and more


@pytest.mark.parametrize("value", [PAST_9999, BEFORE_1])
async def test_key_and_token_expiry_at_the_edge_of_the_calendar_is_422(
    api: Api, value: str
) -> None:
    t = await api.tenant()
    keys = f"/v1/orgs/{t.org_id}/api-keys"
    before = [k["id"] for k in (await t.client.get(keys)).json()["data"]]
    body = {"name": "edge", "scopes": ["org:read"], "expires_at": value}

    assert_time_refused(await t.client.post(keys, json=body), "expires_at")
    admin = await api.client.post(f"/v1/admin/orgs/{t.org_id}/api-keys", json=body)
    assert_time_refused(admin, "expires_at")
    token = await api.client.post("/v1/admin/join-tokens", json={"name": "e", "expires_at": value})
    assert_time_refused(token, "expires_at")

    assert [k["id"] for k in (await t.client.get(keys)).json()["data"]] == before  # none made
    tokens = (await api.client.get("/v1/admin/join-tokens")).json()["data"]
    assert not [tok for tok in tokens if tok["name"] == "e"]


async def test_a_key_expiring_at_the_last_storable_instant_works(api: Api) -> None:
    t = await api.tenant()
    r = await t.client.post(
        f"/v1/orgs/{t.org_id}/api-keys",
        json={"name": "forever", "scopes": ["org:read"], "expires_at": LAST},
    )
    assert r.status_code == 201, r.text
    assert r.json()["expires_at"].startswith("9999-12-31T23:59:59")
    me = await api.client_for(r.json()["key"]).get("/v1/me")
    assert me.status_code == 200, me.text
    token = await api.client.post("/v1/admin/join-tokens", json={"name": "t", "expires_at": LAST})
    assert token.status_code == 201, token.text


# --- text no database can hold, escaped in a query parameter's JSON -----------------------------


@pytest.mark.parametrize(
    ("value", "says"),
    [("\u0000", "NUL"), ("TW\u0000", "NUL"), ("\ud800", "surrogate"), ("a\udfffb", "surrogate")],
)
async def test_unstorable_text_in_a_json_query_parameter_is_400(
    api: Api, value: str, says: str
) -> None:
    await join_host(api, [("RTX 4090", 24564)])
    t = await api.tenant()
    q = json.dumps({"geolocation": {"in": [value]}})  # ensure_ascii: the text has \\u escapes
    assert "\\u" in q

    native = await t.client.get(f"/v1/orgs/{t.org_id}/offers", params={"q": q})
    assert native.status_code == 400, native.text
    assert native.json()["param"] == "geolocation" and says in native.json()["error"]

    vast = await t.client.get("/api/v0/bundles/", params={"q": q})
    assert vast.status_code == 400, vast.text
    assert vast.json()["success"] is False and says in vast.json()["msg"]

    eq = json.dumps({"gpu_name": {"eq": value}})
    assert (await t.client.get("/api/v0/bundles/", params={"q": eq})).status_code == 400


# --- long in lists ------------------------------------------------------------------------------


async def test_an_in_list_of_40000_values_is_400(api: Api) -> None:
    await join_host(api, [("RTX 4090", 24564)])
    t = await api.tenant()
    for body in (
        {"geolocation": {"in": [f"C{i}" for i in range(40_000)]}},
        {"machine_id": {"in": list(range(40_000))}},
        {"machine_id": {"notin": list(range(40_000))}},
    ):
        r = await t.client.post("/api/v0/bundles/", json=body)
        assert r.status_code == 400, r.text
        assert r.json()["error"] == "too_many_values"
        assert (
            "40000 values" in r.json()["msg"] and f"at most {MAX_LISTED_VALUES}" in r.json()["msg"]
        )


async def test_in_lists_share_the_limit(api: Api) -> None:
    await join_host(api, [("RTX 4090", 24564)])
    t = await api.tenant()
    half = MAX_LISTED_VALUES // 2 + 1
    r = await t.client.post(
        "/api/v0/bundles/",
        json={"machine_id": {"in": list(range(half))}, "geolocation": {"notin": ["X"] * half}},
    )
    assert r.status_code == 400 and r.json()["error"] == "too_many_values", r.text


async def test_an_in_list_at_the_limit_answers_exactly(api: Api) -> None:
    await join_host(api, [("RTX 4090", 24564)] * 2)
    t = await api.tenant()
    everything = (await t.client.post("/api/v0/bundles/", json={})).json()["offers"]
    machine = everything[0]["machine_id"]
    wanted = [machine, *range(10**6, 10**6 + MAX_LISTED_VALUES - 1)]  # one real, the rest none

    r = await t.client.post("/api/v0/bundles/", json={"machine_id": {"in": wanted}})
    assert r.status_code == 200, r.text
    assert sorted(o["id"] for o in r.json()["offers"]) == sorted(o["id"] for o in everything)
    r = await t.client.post("/api/v0/bundles/", json={"machine_id": {"notin": wanted}})
    assert r.status_code == 200 and r.json()["offers"] == [], r.text


# --- integers beyond every float (found by test_query_json_property.py) -------------------------

HUGE = 10**400  # JSON integers are unbounded; float() of this one raises OverflowError


async def test_an_integer_beyond_every_float_in_a_query_is_400(api: Api) -> None:
    await join_host(api, [("RTX 4090", 24564)])
    t = await api.tenant()
    for query in ({"num_gpus": {"gte": HUGE}}, {"allocated_storage": HUGE}, {"dph_total": HUGE}):
        r = await t.client.get("/api/v0/bundles/", params={"q": json.dumps(query)})
        assert r.status_code == 400, r.text
        assert r.json()["error"] == "invalid_request", r.text
        native = await t.client.get(f"/v1/orgs/{t.org_id}/offers", params={"q": json.dumps(query)})
        assert native.status_code == 400 and native.json()["param"] in query, native.text

    token = base64.urlsafe_b64encode(json.dumps([HUGE]).encode()).decode().rstrip("=")
    r = await t.client.get("/api/v1/instances/", params={"after_token": token})
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "invalid_cursor"
