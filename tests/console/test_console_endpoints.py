"""The console's serverless pages over real HTTP, on SQLite and Postgres: an endpoint and its
workergroup made in forms, the autoscaler stepped until a worker reports ready, its load and
perf shown, the scaling steps charted and logged; bad knobs refused in the API's words."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.console.test_console_http import SCRIPT, csrf_of, signed_in
from tests.console.test_console_money_hooks import ESCAPED, chart_of
from tests.harness import Api
from tests.server.market import join_host
from tests.server.serverless_kit import LAUNCH, RTX, autoscaler, report, run_assigned, settle


async def test_an_endpoint_from_the_form_to_a_ready_worker(api: Api) -> None:
    # The console's windows of time (the last day's log) are the process's clock, as the API's
    # is when nothing injects one.
    api.clock.set(datetime.now(UTC).replace(microsecond=0))
    host = await join_host(api, [RTX, RTX])
    t = await api.tenant("Acme")
    browser = await signed_in(api, t.key)
    assert "No serverless endpoints" in (await browser.get("/console/endpoints")).text
    token = await csrf_of(browser, "/console/endpoints")
    form = {"csrf": token, "name": "llm", "cold_workers": "0", "max_workers": "3"}
    r = await browser.post("/console/endpoints", data={**form, "target_util": "2"})
    assert r.status_code == 400 and "target_util" in r.text
    assert 'value="llm"' in r.text  # kept as typed
    r = await browser.post("/console/endpoints", data={**form, "max_workers": "many"})
    assert r.status_code == 400 and "Maximum workers must be a whole number" in r.text
    r = await browser.post("/console/endpoints", data={**form, "min_load": "nan"})
    assert r.status_code == 400 and "Minimum load (perf units/s) must be a number" in r.text
    assert (await t.client.get(f"/v1/orgs/{t.org_id}/endpoints")).json()["data"] == []
    r = await browser.post("/console/endpoints", data={**form, "inactivity_timeout": "60"})
    assert r.status_code == 303, r.text
    page = r.headers["location"]
    [ep] = (await t.client.get(f"/v1/orgs/{t.org_id}/endpoints")).json()["data"]
    assert page == f"/console/endpoints/{ep['id']}"
    assert ep["max_workers"] == 3 and ep["cold_workers"] == 0 and ep["inactivity_timeout"] == 60
    html = (await browser.get(page)).text
    assert "add a workergroup below" in html and ep["api_key"] in html

    group = {"csrf": token, "launch_args": LAUNCH, "search_params": "gpu_name=RTX_4090"}
    r = await browser.post(f"{page}/workergroups", data={**group, "search_params": "gpu_name="})
    assert r.status_code == 400 and 'role="alert"' in r.text
    r = await browser.post(f"{page}/workergroups", data=group)
    assert r.status_code == 303, r.text
    [g] = (await t.client.get(f"/v1/orgs/{t.org_id}/workergroups")).json()["data"]
    assert g["endpoint_id"] == ep["id"] and g["image"] == "python"

    route = {"endpoint": "llm", "api_key": ep["api_key"], "cost": 50, "request_idx": 0}
    assert (await api.client_for(None).post("/route/", json=route)).status_code == 200
    ctl = autoscaler(api)
    await settle(ctl)
    [spec] = (await run_assigned(host)).values()
    assert await report(api, spec, cur_load=40.0) == 200
    html = (await browser.get(page)).text
    workers = html.split('data-testid="workers"')[1].split("</table>")[0]
    assert "s-idle" in workers and '<td class="num">40.0</td>' in workers
    assert '<td class="num">100.0</td>' in workers and "RTX 4090" in workers
    chart = chart_of(html, "scaling-chart")
    assert chart["series"][0]["label"] == "Predicted load"  # type: ignore[index]
    assert "endpoint.scaled" in html and "worker.idle" in html

    r = await browser.post(page, data={"csrf": token, "name": SCRIPT, "state": "stopped"})
    assert r.status_code == 303, r.text
    html = (await browser.get("/console/endpoints")).text
    assert SCRIPT not in html and ESCAPED in html and "s-stopped" in html
    r = await browser.post(page, data={"csrf": token, "state": "sleeping"})
    assert r.status_code == 400 and 'role="alert"' in r.text
    r = await browser.post(f"{page}/workergroups/{g['id']}/delete", data={"csrf": token})
    assert r.status_code == 303
    r = await browser.post(f"{page}/delete", data={"csrf": token})
    assert r.headers["location"] == "/console/endpoints"
    other = await signed_in(api, (await api.tenant("Other")).key)
    assert (await other.get(page)).status_code == 404
