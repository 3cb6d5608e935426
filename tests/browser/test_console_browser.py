"""The console in real Chromium against a real ``gpuyard up``: an operator and an org's user
sign in, rent an offer and watch the instance run and log, create a cluster and watch it turn
healthy, create and revoke a key, cordon a host; HTML in names and logs never runs; every page
has labelled controls, passes axe-core (WCAG 2 A/AA) and is photographed (wide, phone, dark).

One server and one browser for the package (conftest.py); each user's page is shared by the
tests after it.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.kit import SCRIPT, check_page, expect, go, new_page, sign_in
from tests.cli.up_kit import Server

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("console-browser")]

COUNTER = (
    "echo '<script>window.pwned=2</script>'; i=0; "
    'while true; do echo "line $i"; i=$((i+1)); sleep 0.5; done'
)
HTTP_SERVER = "exec python3 -m http.server $PORT --bind 127.0.0.1"
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
]
OPERATOR_PAGES = ["hosts", "join-tokens", "prices", "orgs"]


@pytest.mark.timeout(240)
def test_rent_an_offer_and_watch_the_instance_run_and_log(
    up: Server, customer: Any, screenshots: Path
) -> None:
    page = customer
    go(page, "Marketplace")
    page.get_by_label("Filter").fill("num_gpus=1")
    page.get_by_role("button", name="Search").click()
    page.get_by_role("link", name=re.compile(r"Rent offer \d+")).first.click()
    page.get_by_label("Command").fill(COUNTER)
    page.get_by_label("Label", exact=True).fill(SCRIPT)
    check_page(page, screenshots, "rent")
    page.get_by_role("button", name="Rent").click()

    expect(page.get_by_test_id("vm-state")).to_contain_text("running")  # polled, no reload
    expect(page.get_by_test_id("logs")).to_contain_text("line 3")
    expect(page.get_by_test_id("logs")).to_contain_text("<script>window.pwned=2</script>")
    assert page.evaluate("window.pwned") is None
    check_page(page, screenshots, "instance")

    go(page, "Overview")
    expect(page.get_by_test_id("running-gpus")).to_have_text("1")
    chart = page.locator("#instances-chart canvas")
    expect(chart).to_have_attribute("aria-label", re.compile("running 1"))
    assert page.evaluate("c => Chart.getChart(c).data.labels", chart.element_handle()) == [
        "running"
    ]  # drawn by Chart.js under the console's CSP
    check_page(page, screenshots, "overview-customer")

    go(page, "Instances")
    expect(page.get_by_role("cell", name=SCRIPT)).to_be_visible()  # the label, as text
    check_page(page, screenshots, "instances")
    page.get_by_role("row").filter(has_text=SCRIPT).get_by_role("link").click()
    page.get_by_label("Label", exact=True).fill("trainer")
    page.get_by_role("button", name="Save label").click()
    expect(page.get_by_label("Label", exact=True)).to_have_value("trainer")
    page.get_by_role("button", name="Stop").click()
    expect(page.get_by_test_id("vm-state")).to_contain_text(re.compile("stopped|exited"))
    page.get_by_role("button", name="Destroy").click()
    expect(page.get_by_role("heading", name="Instances", level=1)).to_be_visible()
    expect(page.get_by_text("No instances.")).to_be_visible()


@pytest.mark.timeout(240)
def test_create_a_cluster_and_watch_it_turn_healthy(
    up: Server, customer: Any, screenshots: Path
) -> None:
    page = customer
    go(page, "Clusters")
    expect(page.get_by_text("No clusters.")).to_be_visible()
    page.get_by_label("Name").fill(SCRIPT)
    page.get_by_label("Container image").fill("python:3")
    page.get_by_label("Command").fill(HTTP_SERVER)
    page.get_by_label("Health path").fill("/")
    page.get_by_role("button", name="Create cluster").click()
    expect(page.get_by_role("alert")).to_contain_text("name must be 1-63 lowercase letters")
    expect(page.get_by_label("Name")).to_have_value(SCRIPT)  # kept, as text
    assert page.evaluate("window.pwned") is None

    page.get_by_label("Name").fill("web")
    page.get_by_role("button", name="Create cluster").click()
    expect(page.get_by_role("heading", name="Cluster web")).to_be_visible()
    expect(page.get_by_test_id("cluster-status")).to_contain_text("healthy")
    check_page(page, screenshots, "cluster")

    page.get_by_label("Replicas").fill("2")
    page.get_by_role("button", name="Apply").click()
    expect(page.get_by_text("2 / 2")).to_be_visible()
    expect(page.get_by_test_id("cluster-status")).to_contain_text("healthy")
    go(page, "Clusters")
    expect(page.get_by_role("link", name="web", exact=True)).to_be_visible()
    check_page(page, screenshots, "clusters")


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def charged_instance(api: httpx.Client) -> dict[str, Any]:
    """Rent a one-GPU offer at the price in force and wait (bounded) until the meter has
    charged it: the usage the billing page charts."""
    org = api.get("/v1/me").json()["org_id"]
    offers = api.get(f"/v1/orgs/{org}/offers", params={"query": "num_gpus=1", "limit": 1})
    body = {"offer_id": offers.json()["data"][0]["id"], "command": "sleep 600"}
    made = api.post(f"/v1/orgs/{org}/vms", json=body)
    assert made.status_code == 201, made.text
    deadline = time.monotonic() + 60  # the meter settles every second; a busy machine is slower
    while api.get(f"/v1/orgs/{org}/usage").json()["cost_cents"] == 0:
        assert time.monotonic() < deadline, api.get(f"/v1/orgs/{org}/billing/ledger").json()
        time.sleep(0.5)
    return {"org_id": org, **made.json()}


def test_the_operators_credit_shows_on_the_orgs_billing_page(
    up: Server, operator: Any, customer: Any, screenshots: Path
) -> None:
    go(operator, "Prices")  # a cent a second per GPU: what the org rents is charged at once
    operator.get_by_label("Cents per GPU-hour").fill("3600")
    operator.get_by_role("button", name="Set price").click()
    expect(operator.get_by_role("cell", name="3600", exact=True)).to_be_visible()
    go(operator, "Organizations")
    operator.get_by_role("link", name="Credit Acme").click()
    operator.get_by_label("Amount").fill("25")
    operator.get_by_label("Description").fill("welcome <b>credit</b>")
    check_page(operator, screenshots, "credit")
    operator.get_by_role("button", name="Credit").click()
    expect(operator.get_by_test_id("credited")).to_contain_text("Credited $25.00 to Acme")

    page = customer
    go(page, "Billing")
    credit = page.get_by_test_id("ledger").get_by_role("row").filter(has_text="credit")
    expect(credit).to_contain_text("$25.00")
    expect(credit).to_contain_text("welcome <b>credit</b>")  # as text
    expect(page.get_by_test_id("balance")).not_to_have_text("$0.00")
    page.get_by_label("Kind").select_option("usage")
    page.get_by_role("button", name="Filter").click()
    expect(
        page.get_by_test_id("ledger").get_by_role("row").filter(has_text="$25.00")
    ).to_have_count(0)
    with httpx.Client(base_url=up.base_url, headers=bearer(page.api_key), timeout=30) as api:
        vm = charged_instance(api)  # its own usage: no other test's cluster is relied on
        page.reload()  # the usage section is drawn with the page
        chart = page.locator("#usage-chart canvas")
        expect(chart).to_have_attribute(
            "aria-label", re.compile(r"Spend by day: \d{4}-\d\d-\d\d \$\d+\.\d\d")
        )
        spent = page.evaluate(
            "c => Chart.getChart(c).data.datasets[0].data", chart.element_handle()
        )
        assert spent[-1] > 0, spent
        assert api.delete(f"/v1/orgs/{vm['org_id']}/vms/{vm['id']}").status_code == 200
    check_page(page, screenshots, "billing-customer")
    go(page, "Overview")
    expect(page.get_by_test_id("overview-balance")).not_to_have_text("$0.00")


def test_a_webhook_endpoint_and_its_secret_shown_once(
    up: Server, customer: Any, screenshots: Path
) -> None:
    page = customer
    go(page, "Webhooks")
    expect(page.get_by_text("No webhook endpoints.")).to_be_visible()
    page.get_by_label("URL").fill(f"{up.base_url}/hooks/in")
    page.get_by_label("billing.*").check()
    page.get_by_role("button", name="Add endpoint").click()
    secret = page.locator("#new-secret")
    assert secret.input_value().startswith("whsec_")
    page.get_by_role("button", name="Copy").click()
    expect(page.get_by_role("button", name="Copied")).to_be_visible()
    check_page(page, screenshots, "webhooks-created")
    page.get_by_role("link", name=f"{up.base_url}/hooks/in").click()
    expect(page.locator("#new-secret")).to_have_count(0)  # shown once
    page.get_by_role("button", name="Send a test event").click()
    expect(page.get_by_role("heading", name="Delivery of webhook.test")).to_be_visible()
    expect(page.get_by_test_id("attempts")).to_contain_text("HTTP 404")  # polled, no reload
    check_page(page, screenshots, "webhook-delivery")


def test_a_serverless_endpoint_created_and_visible(customer: Any, screenshots: Path) -> None:
    page = customer
    go(page, "Endpoints")
    expect(page.get_by_text("No serverless endpoints.")).to_be_visible()
    page.get_by_label("Name").fill("llm")
    page.get_by_label("Maximum workers").fill("2")
    page.get_by_role("button", name="Create endpoint").click()
    expect(page.get_by_role("alert")).to_contain_text("max_workers must be >= cold_workers")
    expect(page.get_by_label("Name")).to_have_value("llm")  # the form as it was typed
    page.get_by_label("Cold workers").fill("0")
    page.get_by_role("button", name="Create endpoint").click()
    expect(page.get_by_role("heading", name="Endpoint llm")).to_be_visible()
    expect(page.get_by_test_id("endpoint-state")).to_contain_text("active")
    check_page(page, screenshots, "endpoint")
    go(page, "Endpoints")
    expect(page.get_by_role("link", name="llm", exact=True)).to_be_visible()


def test_create_and_revoke_a_key(customer: Any, screenshots: Path) -> None:
    page = customer
    go(page, "API keys")
    page.get_by_label("Name").fill("ci")
    page.get_by_label("org:read").check()
    page.get_by_label("org:write").uncheck()
    page.get_by_role("button", name="Create key").click()
    secret = page.locator("#new-key")
    assert secret.input_value().startswith("vl_")
    page.get_by_role("button", name="Copy").click()
    expect(page.get_by_role("button", name="Copied")).to_be_visible()
    check_page(page, screenshots, "api-keys-created")
    row = page.get_by_role("row").filter(has_text="ci")
    row.get_by_role("button", name="Revoke").click()
    expect(page.get_by_role("row").filter(has_text="ci")).to_contain_text("revoked")
    expect(page.locator("#new-key")).to_have_count(0)  # shown once


def test_the_operator_cordons_and_uncordons_a_host(operator: Any, screenshots: Path) -> None:
    page = operator
    go(page, "Hosts")
    host = page.locator("section.host").first
    host.get_by_role("button", name="Cordon").click()
    expect(page.locator("section.host").first).to_contain_text("cordoned")
    check_page(page, screenshots, "hosts-cordoned")
    page.locator("section.host").first.get_by_role("button", name="Uncordon").click()
    expect(page.locator("section.host").first.get_by_role("button", name="Cordon")).to_be_visible()


def test_a_join_token_shows_the_agent_command(up: Server, operator: Any) -> None:
    page = operator
    go(page, "Join tokens")
    page.get_by_label("Name").fill("rack 3")
    page.get_by_role("button", name="Create join token").click()
    command = page.locator("#join-command").input_value()
    assert re.fullmatch(rf"gpuyard agent --server {up.base_url} --token gyj_\S+", command)


def test_every_page_is_accessible_on_a_laptop_a_phone_and_in_the_dark(
    browser: Any, up: Server, operator: Any, screenshots: Path
) -> None:
    for name in PAGES + OPERATOR_PAGES:
        operator.goto(f"{up.base_url}/console/{name}")
        expect(operator.get_by_role("heading", level=1)).to_be_visible()
        check_page(operator, screenshots, name)
    operator.get_by_role("button", name="Switch light or dark").click()
    check_page(operator, screenshots, "orgs-dark")

    phone = new_page(browser, viewport={"width": 390, "height": 844}, is_mobile=True)
    try:
        sign_in(phone, up.base_url, up.printed_keys()[0])
        for name in ("overview", "clusters", "hosts"):
            phone.goto(f"{up.base_url}/console/{name}")
            width = phone.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, (name, width)  # no sideways scrolling of the page
            check_page(phone, screenshots, f"{name}-phone")
    finally:
        phone.context.close()
    signed_out = operator
    signed_out.get_by_role("button", name="Sign out").click()
    expect(signed_out.get_by_role("status")).to_contain_text("Signed out.")
    check_page(signed_out, screenshots, "sign-in")
