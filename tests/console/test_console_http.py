"""The console over real HTTP without a browser, on SQLite and Postgres: sign-in and its cookie,
CSRF and origin checks, what each key may see, the API's refusals shown in its words, secrets
shown once, a revoked key ending the session, and HTML in names and logs escaped.
"""

from __future__ import annotations

import re

import httpx

from tests.harness import Api
from tests.server.market import join_host

PAGES = [
    "overview",
    "marketplace",
    "instances",
    "clusters",
    "endpoints",
    "playground",
    "vector-store",
    "billing",
    "webhooks",
    "api-keys",
    "ssh-keys",
    "hosts",
    "join-tokens",
    "prices",
    "orgs",
]
OPERATOR_PAGES = {"hosts", "join-tokens", "prices", "orgs"}
SCRIPT = "<script>window.pwned=1</script>"
CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')


async def signed_in(api: Api, key: str) -> httpx.AsyncClient:
    browser = httpx.AsyncClient(base_url=api.base_url, timeout=30)
    api.opened.append(browser)
    r = await browser.post("/console/sign-in", data={"api_key": key})
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/console/"
    return browser


async def csrf_of(browser: httpx.AsyncClient, page: str = "/console/overview") -> str:
    r = await browser.get(page)
    assert r.status_code == 200, r.text
    found = CSRF.search(r.text)
    assert found, r.text
    return found.group(1)


async def test_a_wrong_key_is_refused_with_a_clear_message_and_no_cookie(api: Api) -> None:
    browser = httpx.AsyncClient(base_url=api.base_url, timeout=30)
    api.opened.append(browser)
    r = await browser.post("/console/sign-in", data={"api_key": "vl_" + "x" * 43})
    assert r.status_code == 401
    assert "That key was refused: invalid API key" in r.text
    assert "set-cookie" not in r.headers
    r = await browser.post("/console/sign-in", data={"api_key": "  "})
    assert r.status_code == 400 and "Paste an API key" in r.text
    assert (await browser.get("/console/overview")).headers["location"] == "/console/sign-in"


async def test_the_key_lives_in_an_httponly_strict_cookie_for_the_console_only(api: Api) -> None:
    browser = httpx.AsyncClient(base_url=api.base_url, timeout=30)
    api.opened.append(browser)
    r = await browser.post("/console/sign-in", data={"api_key": api.operator_key})
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"gpuyard_console={api.operator_key};")
    for part in ("HttpOnly", "Path=/console", "SameSite=strict"):
        assert part in cookie, cookie
    page = await browser.get("/console/overview")
    assert api.operator_key not in page.text  # never written into a page a script could read
    assert "script-src 'self'" in page.headers["content-security-policy"]
    token = await csrf_of(browser)
    out = await browser.post("/console/sign-out", data={"csrf": token})
    assert out.headers["location"] == "/console/sign-in?reason=signed-out"
    assert 'gpuyard_console=""' in out.headers["set-cookie"]
    assert (await browser.get("/console/overview")).status_code == 303


async def test_every_page_renders_for_the_operator_and_an_org_key_sees_no_fleet(
    api: Api,
) -> None:
    await join_host(api, [("RTX 4090", 24564)])
    operator = await signed_in(api, api.operator_key)
    for name in PAGES:
        r = await operator.get(f"/console/{name}")
        assert r.status_code == 200, (name, r.text)
        assert 'href="/console/hosts"' in r.text
    tenant = await api.tenant("Acme")
    org = await signed_in(api, tenant.key)
    for name in PAGES:
        r = await org.get(f"/console/{name}")
        assert 'href="/console/hosts"' not in r.text, name
        if name in OPERATOR_PAGES:
            assert r.status_code == 403, name
            assert "operator" in r.text  # the API's own refusal
        else:
            assert r.status_code == 200, (name, r.text)
    assert "RTX 4090" in (await org.get("/console/marketplace")).text


async def test_a_post_without_the_token_or_from_another_origin_changes_nothing(
    api: Api,
) -> None:
    operator = await signed_in(api, api.operator_key)
    token = await csrf_of(operator)
    form = {"name": "evil", "csrf": token}
    assert (await operator.post("/console/orgs", data={"name": "evil"})).status_code == 403
    assert (
        await operator.post("/console/orgs", data={**form, "csrf": "0" * 64})
    ).status_code == 403
    foreign = {"origin": "http://attacker.example"}
    assert (await operator.post("/console/orgs", data=form, headers=foreign)).status_code == 403
    r = await api.client.get("/v1/admin/orgs")
    assert "evil" not in {o["name"] for o in r.json()["data"]}
    done = await operator.post("/console/orgs", data=form)
    assert done.status_code == 303
    r = await api.client.get("/v1/admin/orgs")
    assert "evil" in {o["name"] for o in r.json()["data"]}
    # Signing in from another site's page is refused too (no login CSRF).
    stranger = httpx.AsyncClient(base_url=api.base_url, timeout=30)
    api.opened.append(stranger)
    r = await stranger.post("/console/sign-in", data={"api_key": api.operator_key}, headers=foreign)
    assert r.status_code == 403 and "set-cookie" not in r.headers


async def test_refusals_are_shown_in_the_apis_words_and_the_form_kept(api: Api) -> None:
    tenant = await api.tenant("Acme")
    browser = await signed_in(api, tenant.key)
    token = await csrf_of(browser, "/console/clusters")
    form = {"csrf": token, "name": SCRIPT, "gpu_type": "rtx-4090", "container": "python:3"}
    r = await browser.post("/console/clusters", data=form)
    assert r.status_code == 400
    assert "name must be 1-63 lowercase letters" in r.text
    assert SCRIPT not in r.text  # the name, echoed back into the form, is escaped
    assert "&lt;script&gt;window.pwned=1&lt;/script&gt;" in r.text
    r = await browser.post("/console/clusters", data={**form, "name": "web", "replicas": "x"})
    assert r.status_code == 400 and "Replicas must be a whole number" in r.text
    listed = await tenant.client.get(f"/v1/orgs/{tenant.org_id}/clusters")
    assert listed.json()["data"] == []


async def test_a_new_key_is_shown_once_and_a_revoked_session_ends(api: Api) -> None:
    tenant = await api.tenant("Acme")
    browser = await signed_in(api, tenant.key)
    token = await csrf_of(browser, "/console/api-keys")
    r = await browser.post(
        "/console/api-keys", data={"csrf": token, "name": "ci", "scopes": ["org:read"]}
    )
    assert r.status_code == 201
    secret = re.search(r'id="new-key" type="text" readonly value="(vl_[^"]+)"', r.text)
    assert secret, r.text
    assert secret.group(1) not in (await browser.get("/console/api-keys")).text
    me = await tenant.client.get("/v1/me")
    second = await signed_in(api, secret.group(1))
    third = await signed_in(api, secret.group(1))  # a tab that polls
    page = await second.get("/console/clusters")
    assert page.status_code == 200 and "Create a cluster" not in page.text  # read-only key

    keys = (await tenant.client.get(f"/v1/orgs/{tenant.org_id}/api-keys")).json()["data"]
    (ci,) = [k for k in keys if k["name"] == "ci"]
    r = await browser.post(f"/console/api-keys/{ci['id']}/revoke", data={"csrf": token})
    assert r.status_code == 303
    gone = await second.get("/console/overview")
    assert gone.headers["location"] == "/console/sign-in?reason=expired"
    assert 'gpuyard_console=""' in gone.headers["set-cookie"]
    polled = await third.get("/console/overview", headers={"HX-Request": "true"})
    assert polled.headers["hx-redirect"] == "/console/sign-in?reason=expired"
    assert me.json()["key_id"] != ci["id"]


async def test_html_in_a_label_and_in_logs_is_escaped(api: Api) -> None:
    host = await join_host(api, [("RTX 4090", 24564)])
    tenant = await api.tenant("Acme")
    browser = await signed_in(api, tenant.key)
    offers = (await tenant.client.get(f"/v1/orgs/{tenant.org_id}/offers")).json()["data"]
    token = await csrf_of(browser, f"/console/marketplace/{offers[0]['id']}")
    r = await browser.post(
        f"/console/marketplace/{offers[0]['id']}",
        data={"csrf": token, "command": "sleep 1000", "label": SCRIPT, "env": "A=1\nB = two"},
    )
    assert r.status_code == 303, r.text
    vm_page = r.headers["location"]
    vm_id = vm_page.rsplit("/", 1)[1]
    vm = (await tenant.client.get(f"/v1/orgs/{tenant.org_id}/vms/{vm_id}")).json()
    assert vm["label"] == SCRIPT
    [a] = (await host.beat())["workloads"]
    assert a["spec"]["env"]["A"] == "1" and a["spec"]["env"]["B"] == "two"
    host.report(a["spec"]["id"], "running", host_port=40001, log_tail=f"ok\n{SCRIPT}\n", log_size=9)
    await host.beat()
    for page in (vm_page, "/console/instances"):
        html = (await browser.get(page)).text
        assert SCRIPT not in html, page
        assert "&lt;script&gt;window.pwned=1&lt;/script&gt;" in html, page
    assert "running" in (await browser.get(vm_page)).text


async def test_a_suspended_org_ends_its_sessions_with_the_apis_reason(api: Api) -> None:
    tenant = await api.tenant("Acme")
    browser = await signed_in(api, tenant.key)
    r = await api.client.post(
        f"/v1/admin/orgs/{tenant.org_id}/suspend", json={"reason": "unpaid <b>bill</b>"}
    )
    assert r.status_code == 200, r.text
    page = await browser.get("/console/instances")
    assert page.status_code == 403
    assert f"organization {tenant.org_id} is suspended" in page.text
    assert "&lt;b&gt;bill&lt;/b&gt;" in page.text and "<b>bill" not in page.text
    assert 'gpuyard_console=""' in page.headers["set-cookie"]
    r = await browser.post("/console/sign-in", data={"api_key": tenant.key})
    assert r.status_code == 403 and "is suspended" in r.text


async def test_lists_past_the_first_page_and_a_bad_query_in_the_apis_words(api: Api) -> None:
    for i in range(105):  # the API's pages hold 100 at most
        r = await api.client.post("/v1/admin/orgs", json={"name": f"org-{i:03d}"})
        assert r.status_code == 201, r.text
    operator = await signed_in(api, api.operator_key)
    html = (await operator.get("/console/orgs")).text
    assert html.count("<tr>") == 1 + 1 + 105  # the header, the operator's org, every other
    assert "org-104" in html
    r = await operator.get("/console/marketplace", params={"query": "num_gpus>=banana"})
    assert r.status_code == 200
    found = re.search(r'<p class="error" role="alert">([^<]*)</p>', r.text)
    assert found and "num_gpus" in found.group(1), r.text
