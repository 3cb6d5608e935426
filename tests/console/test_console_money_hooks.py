"""The console's billing, credit and webhook pages over real HTTP, on SQLite and Postgres:
usage drawn from what the meter charged, the ledger filtered and paged past its first page, an
operator's credit sent twice and written once, refusals in the API's words, a webhook's secret
shown once, and deliveries stepped through a real receiver."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

from tests.console.test_console_http import CSRF, SCRIPT, csrf_of, signed_in
from tests.harness import Api
from tests.server.test_metering import meter, rented, run_pass, start_running
from tests.server.test_webhooks import dispatcher, drain, hooked, rx  # noqa: F401
from tests.server.webhook_receiver import Receiver

ESCAPED = "&lt;script&gt;window.pwned=1&lt;/script&gt;"
IDEMPOTENCY = re.compile(r'name="idempotency_key" value="([0-9a-f]{32})"')


def chart_of(html: str, box: str) -> dict[str, object]:
    found = re.search(rf'id="{box}"><canvas data-chart=\'([^\']+)\'', html)
    assert found, html
    spec: dict[str, object] = json.loads(found.group(1).replace("&#34;", '"'))
    return spec


def ledger_rows(html: str) -> int:
    table = html.split('data-testid="ledger"', 1)
    return table[1].split("</table>", 1)[0].count("<tr>") - 1 if len(table) == 2 else 0


async def test_billing_shows_balance_usage_and_the_ledger_filtered_and_paged(api: Api) -> None:
    api.clock.set(datetime.now(UTC).replace(hour=1, minute=0, second=0, microsecond=0))
    t, host, vm, wid = await rented(api)
    operator = await signed_in(api, api.operator_key)
    page = f"/console/orgs/{t.org_id}/credit"
    token = await csrf_of(operator, page)
    r = await operator.post(
        page, data={"csrf": token, "amount": "10", "idempotency_key": "f1", "description": SCRIPT}
    )
    assert r.status_code == 201 and "Credited $10.00" in r.text
    assert SCRIPT not in r.text and ESCAPED in r.text
    await start_running(api, host, wid)
    api.clock.advance(hours=10)  # 10 h at 7 cents an hour: 70 cents
    await run_pass(meter(api))

    customer = await signed_in(api, t.key)
    html = (await customer.get("/console/billing")).text
    assert 'data-testid="balance">$9.30<' in html
    assert 'data-testid="month-spend">$0.70<' in html
    chart = chart_of(html, "usage-chart")
    today = api.clock.now().date().isoformat()
    assert chart["labels"][-1] == today  # type: ignore[index]
    assert chart["series"][0]["values"][-1] == 0.7  # type: ignore[index]
    assert ledger_rows(html) == 2 and ESCAPED in html and SCRIPT not in html
    only_usage = (await customer.get("/console/billing", params={"kind": "usage"})).text
    assert ledger_rows(only_usage) == 1 and vm["id"] in only_usage
    overview = (await customer.get("/console/overview")).text
    assert 'data-testid="overview-balance">$9.30<' in overview
    assert chart_of(overview, "spend-chart")["series"][0]["values"][-1] == 0.7  # type: ignore[index]

    for i in range(55):  # past the console's page of 50
        r = await api.client.post(
            f"/v1/admin/orgs/{t.org_id}/credits",
            json={"amount_cents": 1},
            headers={"Idempotency-Key": f"bulk-{i}"},
        )
        assert r.status_code == 201, r.text
    first = (await customer.get("/console/billing", params={"kind": "credit"})).text
    assert ledger_rows(first) == 50
    found = re.search(r'href="(/console/billing\?kind=credit&amp;cursor=[^"]+)" rel="next"', first)
    assert found, first
    second = (await customer.get(found.group(1).replace("&amp;", "&"))).text
    assert ledger_rows(second) == 6 and 'rel="next"' not in second
    bad = await customer.get("/console/billing", params={"since": "yesterday"})
    assert bad.status_code == 200 and 'role="alert"' in bad.text and "since" in bad.text
    assert 'data-testid="balance">$9.85<' in bad.text  # the rest of the page still shown


async def test_an_operator_credit_sent_twice_is_written_once(api: Api) -> None:
    t = await api.tenant("Acme")
    operator = await signed_in(api, api.operator_key)
    page = f"/console/orgs/{t.org_id}/credit"
    form_html = (await operator.get(page)).text
    key = IDEMPOTENCY.search(form_html)
    assert key, form_html
    again = IDEMPOTENCY.search((await operator.get(page)).text)
    assert again and again.group(1) != key.group(1)  # a fresh key for each form
    token = CSRF.search(form_html).group(1)  # type: ignore[union-attr]
    form = {"csrf": token, "amount": "25.50", "idempotency_key": key.group(1)}
    for _ in range(2):  # a double submit, or the browser resending the POST
        r = await operator.post(page, data=form)
        assert r.status_code == 201 and "Credited $25.50" in r.text, r.text
    billing = (await t.client.get(f"/v1/orgs/{t.org_id}/billing")).json()
    assert billing["balance_cents"] == 2550

    refusals = [
        ({"amount": "ten"}, "Amount must be an amount in dollars"),
        ({"amount": "1.005"}, "whole cents"),
        ({"amount": "-5"}, "amount_cents"),  # the API's words
        ({"amount": "7", "idempotency_key": ""}, "Idempotency-Key"),
        ({"amount": "9", "idempotency_key": key.group(1)}, "Idempotency-Key"),  # reused: 409
        ({"amount": "Infinity"}, "Amount must be an amount in dollars"),
        ({"amount": "3", "idempotency_key": "a\nb"}, "reload the page"),
    ]
    for i, (fields, words) in enumerate(refusals):
        r = await operator.post(page, data={**form, "idempotency_key": f"k{i}", **fields})
        assert r.status_code in (400, 409, 422), (fields, r.text)
        assert words in r.text, (fields, r.text)
    assert (await t.client.get(f"/v1/orgs/{t.org_id}/billing")).json()["balance_cents"] == 2550
    tenant = await signed_in(api, t.key)
    assert (await tenant.get(page)).status_code == 403  # an org key may not credit
    html = (await tenant.get("/console/billing")).text
    assert 'data-testid="balance">$25.50<' in html and ledger_rows(html) == 1


async def test_a_webhook_from_creation_to_deliveries_redelivery_and_rotation(
    hooked: Api,  # noqa: F811
    rx: Receiver,  # noqa: F811
) -> None:
    t = await hooked.tenant("Acme")
    browser = await signed_in(hooked, t.key)
    empty = (await browser.get("/console/webhooks")).text
    assert "No webhook endpoints" in empty
    token = await csrf_of(browser, "/console/webhooks")
    base = {"csrf": token, "url": rx.url, "description": SCRIPT}
    r = await browser.post("/console/webhooks", data={**base, "event_types": "nope.x"})
    assert r.status_code == 400 and "no event group" in r.text
    assert f'value="{rx.url}"' in r.text  # the form kept
    r = await browser.post(
        "/console/webhooks",
        data={**base, "groups": ["billing.*", "webhook.*"], "event_types": "org.updated"},
    )
    assert r.status_code == 201, r.text
    secret = re.search(r'id="new-secret" type="text" readonly value="(whsec_[^"]+)"', r.text)
    assert secret, r.text
    assert SCRIPT not in r.text and ESCAPED in r.text
    listed = (await browser.get("/console/webhooks")).text
    assert secret.group(1) not in listed  # shown once
    [hook] = (await t.client.get(f"/v1/orgs/{t.org_id}/webhooks")).json()["data"]
    assert sorted(hook["event_types"]) == ["billing.*", "org.updated", "webhook.*"]
    page = f"/console/webhooks/{hook['id']}"
    assert "No deliveries yet" in (await browser.get(page)).text

    r = await browser.post(f"{page}/test", data={"csrf": token})
    assert r.status_code == 303
    delivery_page = r.headers["location"]
    assert "No attempt yet" in (await browser.get(delivery_page)).text
    assert await drain(dispatcher(hooked)) == 1
    rx.verify(secret.group(1), rx.received[0])  # signed with the secret the console showed
    html = (await browser.get(delivery_page)).text
    assert "s-succeeded" in html and "<td>HTTP 2" in html
    r = await browser.post(f"{delivery_page}/redeliver", data={"csrf": token})
    assert r.status_code == 303
    assert await drain(dispatcher(hooked)) == 1
    html = (await browser.get(delivery_page)).text
    assert html.split('data-testid="attempts"')[1].count("<tr>") == 3  # header and two
    assert "succeeded" in (await browser.get(page, params={"status": "succeeded"})).text
    assert "No failed deliveries" in (await browser.get(page, params={"status": "failed"})).text

    r = await browser.post(f"{page}/rotate-secret", data={"csrf": token})
    rotated = re.search(r'id="new-secret" type="text" readonly value="(whsec_[^"]+)"', r.text)
    assert r.status_code == 200 and rotated and rotated.group(1) != secret.group(1)
    r = await browser.post(
        page, data={"csrf": token, "url": rx.url, "groups": ["org.*"], "description": "x"}
    )
    assert r.status_code == 303  # "enabled" unticked: disabled
    got = (await t.client.get(f"/v1/orgs/{t.org_id}/webhooks/{hook['id']}")).json()
    assert got["enabled"] is False and got["event_types"] == ["org.*"]
    r = await browser.post(page, data={"csrf": token, "url": "ftp://x", "enabled": "on"})
    assert r.status_code == 400 and 'value="ftp://x"' in r.text  # refused, as typed
    r = await browser.post(f"{page}/delete", data={"csrf": token})
    assert r.headers["location"] == "/console/webhooks"
    assert (await browser.get(page)).status_code == 404
    reader = await hooked.tenant("Other")
    other = await signed_in(hooked, reader.key)
    assert (await other.get(page)).status_code == 404  # another org's endpoint
