"""Webhooks end to end on both databases: endpoints over the API, a real receiver on loopback,
the dispatcher stepped with the injected clock, and every signature checked with the
``standardwebhooks`` package."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import standardwebhooks
from sqlalchemy import func, select

from gpuyard.server import orm
from gpuyard.server.controllers.webhook_dispatch import SCHEDULE, WebhookDispatcher
from gpuyard.server.db import write_session
from gpuyard.server.services import events
from tests.harness import Api, Tenant, start_api
from tests.server.webhook_receiver import Receiver, receiver


@pytest.fixture
async def hooked(db_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    async with start_api(db_url, tmp_path, webhook_allow_private_targets=True) as running:
        running.clock.set(datetime.now(UTC).replace(microsecond=0))  # the receiver's tolerance
        yield running


@pytest.fixture
async def rx(hooked: Api) -> AsyncIterator[Receiver]:
    async with receiver(hooked.clock.now) as r:
        yield r


def dispatcher(api: Api, owner: str = "d") -> WebhookDispatcher:
    return WebhookDispatcher(
        sessions=api.ctx.sessions, clock=api.clock, owner=owner, allow_private=True
    )


async def drain(d: WebhookDispatcher) -> int:
    total = 0
    while n := await d.step():
        total += n
    return total


async def subscribe(t: Tenant, url: str, **body: Any) -> dict[str, Any]:
    r = await t.client.post(f"/v1/orgs/{t.org_id}/webhooks", json={"url": url, **body})
    assert r.status_code == 201, r.text
    return r.json()


async def test_signed_events_reach_the_receiver_filtered(hooked: Api, rx: Receiver) -> None:
    t = await hooked.tenant()
    hook = await subscribe(t, rx.url, event_types=["org.*", "billing.credited"])
    assert hook["secret"].startswith("whsec_")
    got = (await t.client.get(f"/v1/orgs/{t.org_id}/webhooks/{hook['id']}")).json()
    assert "secret" not in got  # shown once
    r = await hooked.client.post(
        f"/v1/admin/orgs/{t.org_id}/credits",
        json={"amount_cents": 500},
        headers={"Idempotency-Key": "c1"},
    )
    assert r.status_code == 201
    assert (await t.client.patch(f"/v1/orgs/{t.org_id}", json={"name": "New"})).status_code == 200
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq5Ew2e3Cm7m7b7xWJ1CqZbT1UnR1Wmx3x8m2f3D9o1 a@b"
    r = await t.client.post(f"/v1/orgs/{t.org_id}/ssh-keys", json={"public_key": key})
    assert r.status_code == 201, r.text  # ssh_key.created: not subscribed
    assert await drain(dispatcher(hooked)) == 2
    assert [m.json()["type"] for m in rx.received] == ["billing.credited", "org.updated"]
    for message in rx.received:
        verified = rx.verify(hook["secret"], message)
        assert verified["type"] == message.json()["type"]
        assert message.headers["webhook-signature"].startswith("v1,")
        assert message.id.startswith("evt_")
    first = rx.received[0].json()
    assert first["data"]["amount_cents"] == 500
    assert first["id"] == rx.received[0].id and first["org_id"] == t.org_id
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        rx.verify("whsec_" + "A" * 32, rx.received[0])
    deliveries = await t.client.get(f"/v1/orgs/{t.org_id}/webhooks/{hook['id']}/deliveries")
    assert {d["status"] for d in deliveries.json()["data"]} == {"succeeded"}


async def test_an_outage_of_hours_loses_nothing(hooked: Api, rx: Receiver) -> None:
    t = await hooked.tenant()
    hook = await subscribe(t, rx.url)
    rx.down = True
    for i in range(30):
        r = await t.client.patch(f"/v1/orgs/{t.org_id}", json={"name": f"n{i}"})
        assert r.status_code == 200
    d = dispatcher(hooked)
    d.batch_size = 7  # type: ignore[misc]  # several batches
    assert await drain(d) == 30  # first attempts, all failed
    assert await drain(d) == 0  # nothing due before the next time of the schedule
    elapsed = 0.0
    for wait in SCHEDULE[1:5]:  # 5 s, 5 min, 30 min, 2 h: down all along
        hooked.clock.advance(seconds=wait * 1.1 + 1)
        elapsed += wait * 1.1 + 1
        assert await drain(d) == 30
    assert elapsed > 2 * 3600
    rx.down = False
    hooked.clock.advance(seconds=SCHEDULE[5] * 1.1 + 1)
    assert await drain(d) == 30
    delivered = [m for m in rx.received if m.headers.get("webhook-id")]
    assert len(delivered) == 30 * 6
    ok_ids = rx.ids()[-30:]
    assert len(set(ok_ids)) == 30
    for message in rx.received[-30:]:
        rx.verify(hook["secret"], message)
    url = f"/v1/orgs/{t.org_id}/webhooks/{hook['id']}/deliveries"
    page = (await t.client.get(url, params={"limit": 100})).json()["data"]
    assert {x["status"] for x in page} == {"succeeded"} and {x["attempts"] for x in page} == {6}
    one = page[0]["id"]
    attempts = (await t.client.get(f"{url}/{one}/attempts")).json()["data"]
    assert [a["status_code"] for a in attempts] == [503] * 5 + [204]


async def test_retry_after_is_honoured_and_410_disables(hooked: Api, rx: Receiver) -> None:
    t = await hooked.tenant()
    hook = await subscribe(t, rx.url)
    rx.answers = [(429, {"Retry-After": "600"}), (410, {})]
    await t.client.patch(f"/v1/orgs/{t.org_id}", json={"name": "x"})
    d = dispatcher(hooked)
    await drain(d)
    url = f"/v1/orgs/{t.org_id}/webhooks/{hook['id']}"
    [pending] = (await t.client.get(f"{url}/deliveries")).json()["data"]
    due = datetime.fromisoformat(pending["next_attempt_at"].replace("Z", "+00:00"))
    assert due >= hooked.clock.now() + timedelta(seconds=600)  # not the schedule's 5 s
    hooked.clock.advance(seconds=60)
    assert await drain(d) == 0
    hooked.clock.advance(seconds=541)
    assert await drain(d) == 1
    got = (await t.client.get(url)).json()
    assert got["enabled"] is False and "410" in got["disabled_reason"]
    [failed] = (await t.client.get(f"{url}/deliveries")).json()["data"]
    assert failed["status"] == "failed"
    # Disabled: new events are not queued for it.
    await t.client.patch(f"/v1/orgs/{t.org_id}", json={"name": "y"})
    assert len((await t.client.get(f"{url}/deliveries")).json()["data"]) == 1
    # Enabled again and the failed event redelivered.
    assert (await t.client.patch(url, json={"enabled": True})).json()["enabled"] is True
    r = await t.client.post(f"{url}/deliveries/{failed['id']}/redeliver")
    assert r.status_code == 202 and r.json()["status"] == "pending"
    assert await drain(d) == 1
    assert rx.received[-1].id == failed["event_id"]
    rx.verify(hook["secret"], rx.received[-1])


async def test_rotation_signs_with_both_secrets_for_a_while(hooked: Api, rx: Receiver) -> None:
    t = await hooked.tenant()
    hook = await subscribe(t, rx.url)
    url = f"/v1/orgs/{t.org_id}/webhooks/{hook['id']}"
    rotated = (await t.client.post(f"{url}/rotate-secret")).json()
    assert rotated["secret"] != hook["secret"]
    r = await t.client.post(f"{url}/test")
    assert r.status_code == 202
    d = dispatcher(hooked)
    await drain(d)
    message = rx.received[-1]
    assert message.json()["type"] == "webhook.test"
    assert len(message.headers["webhook-signature"].split(" ")) == 2
    rx.verify(hook["secret"], message)
    rx.verify(rotated["secret"], message)
    hooked.clock.advance(hours=25)
    await t.client.post(f"{url}/test")
    await drain(d)
    later = rx.received[-1]
    assert len(later.headers["webhook-signature"].split(" ")) == 1
    rx.verify(rotated["secret"], later)
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        rx.verify(hook["secret"], later)


async def test_a_rolled_back_change_queues_nothing(hooked: Api, rx: Receiver) -> None:
    t = await hooked.tenant()
    await subscribe(t, rx.url)
    with pytest.raises(RuntimeError):
        async with write_session(hooked.ctx.sessions) as s:
            await events.record(s, clock=hooked.clock, org_id=t.org_id, type="org.updated")
            raise RuntimeError("the change fails")
    async with hooked.ctx.sessions() as s:
        assert await s.scalar(select(func.count()).select_from(orm.WebhookDelivery)) == 0
    assert await drain(dispatcher(hooked)) == 0 and rx.received == []


async def test_bad_endpoints_are_refused(api: Api) -> None:
    t = await api.tenant()
    url = f"/v1/orgs/{t.org_id}/webhooks"
    cases = [
        ({"url": "ftp://example.com/x"}, 400),
        ({"url": "not a url"}, 400),
        ({"url": "http://127.0.0.1:9/hook"}, 400),
        ({"url": "http://localhost/hook"}, 400),
        ({"url": "http://10.1.2.3/hook"}, 400),
        ({"url": "http://[::1]/hook"}, 400),
        ({"url": "http://169.254.169.254/latest/meta-data"}, 400),
        ({"url": "https://93.184.215.14/hook", "event_types": ["bogus.thing"]}, 400),
        ({"url": "https://93.184.215.14/hook", "event_types": ["instance"]}, 400),
        ({"url": "https://93.184.215.14/hook", "event_types": ["instance.runing"]}, 400),
        ({"url": "https://93.184.215.14/hook", "event_types": "instance.*"}, 422),
        ({"url": 5}, 422),
        ({"url": "https://93.184.215.14/hook", "extra": 1}, 422),
    ]
    for body, status in cases:
        r = await t.client.post(url, json=body)
        assert r.status_code == status, (body, r.text)
    r = await t.client.post(url, json={"url": "http://127.0.0.1:9/hook"})
    assert r.json()["code"] == "webhook_target_not_allowed"
    assert (await t.client.get(url)).json()["data"] == []
    ok = await subscribe(t, "https://93.184.215.14/hook", event_types=["instance.*"])
    other = await api.tenant("Other")
    for method, path in [
        ("GET", ""),
        ("PATCH", ""),
        ("DELETE", ""),
        ("POST", "/test"),
        ("POST", "/rotate-secret"),
        ("GET", "/deliveries"),
    ]:
        r = await other.client.request(
            method,
            f"/v1/orgs/{other.org_id}/webhooks/{ok['id']}{path}",
            json={} if method == "PATCH" else None,
        )
        assert r.status_code == 404, (method, path, r.text)
    r = await t.client.patch(f"{url}/{ok['id']}", json={"url": "http://192.168.1.1/"})
    assert r.status_code == 400
    assert (await t.client.delete(f"{url}/{ok['id']}")).status_code == 204
    assert (await t.client.get(f"{url}/{ok['id']}")).status_code == 404
