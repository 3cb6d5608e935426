from tests.harness import Api


async def test_me(api: Api) -> None:
    r = await api.client.get("/v1/me")
    assert r.status_code == 200, r.text
    assert r.json()["org_id"] == api.operator_org
    assert r.headers["x-request-id"].startswith("req_")
