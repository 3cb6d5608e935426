"""How the dispatcher talks to receivers, on both databases: keep-alive connections reused
across batches and capped per origin, the timeout of an attempt, the request line and headers
it sends, and the target check's addresses."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from gpuyard.server import orm
from gpuyard.server.controllers.webhook_dispatch import (
    PER_ORIGIN,
    WebhookDispatcher,
    _request_target,
    retry_after_seconds,
)
from gpuyard.server.services.webhook_targets import check_target
from tests.harness import Api, start_api
from tests.server.webhook_receiver import Receiver, receiver


@pytest.fixture
async def hooked(db_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    async with start_api(db_url, tmp_path, webhook_allow_private_targets=True) as running:
        running.clock.set(datetime.now(UTC).replace(microsecond=0))
        yield running


@pytest.fixture
async def rx(hooked: Api) -> AsyncIterator[Receiver]:
    async with receiver(hooked.clock.now) as r:
        yield r


def dispatcher(api: Api, **kw: Any) -> WebhookDispatcher:
    return WebhookDispatcher(
        sessions=api.ctx.sessions, clock=api.clock, owner="d", allow_private=True, **kw
    )


async def test_connections_are_kept_across_batches_and_capped_per_origin(
    hooked: Api, rx: Receiver
) -> None:
    t = await hooked.tenant()
    r = await t.client.post(f"/v1/orgs/{t.org_id}/webhooks", json={"url": rx.url})
    assert r.status_code == 201
    d = dispatcher(hooked)
    for i in range(3 * PER_ORIGIN):
        assert (await t.client.patch(f"/v1/orgs/{t.org_id}", json={"name": f"n{i}"})).is_success
    assert await d.step() == 3 * PER_ORIGIN  # one batch, at most PER_ORIGIN at once
    opened = {m.peer for m in rx.received}
    assert 1 <= len(opened) <= PER_ORIGIN
    await t.client.patch(f"/v1/orgs/{t.org_id}", json={"name": "later"})
    assert await d.step() == 1
    assert rx.received[-1].peer in opened  # the next batch reuses a kept connection
    await d.aclose()
    await t.client.patch(f"/v1/orgs/{t.org_id}", json={"name": "after close"})
    assert await d.step() == 1
    assert rx.received[-1].peer not in opened  # closed: a new one
    await d.aclose()


async def test_an_attempt_times_out_and_is_retried(hooked: Api, rx: Receiver) -> None:
    t = await hooked.tenant()
    r = await t.client.post(f"/v1/orgs/{t.org_id}/webhooks", json={"url": rx.url})
    assert r.status_code == 201
    rx.held = asyncio.Event()  # the receiver never answers
    await t.client.patch(f"/v1/orgs/{t.org_id}", json={"name": "slow"})
    d = dispatcher(hooked, timeout_seconds=0.2)
    try:
        assert await d.step() == 1
    finally:
        rx.held.set()
        await d.aclose()
    async with hooked.ctx.sessions() as s:
        delivery = await s.scalar(select(orm.WebhookDelivery))
        attempt = await s.scalar(select(orm.WebhookAttempt))
    assert delivery is not None and attempt is not None
    assert delivery.status == "pending" and delivery.next_run_at is not None
    assert attempt.status_code is None and attempt.error == "Timeout: no answer within 0.2 s"


def test_the_request_target_is_encoded_and_credentials_become_basic_auth() -> None:
    assert _request_target("https://example.com") == ("/", ())
    assert _request_target("https://example.com/a b/é?q=1 2&x=%41#frag") == (
        "/a%20b/%C3%A9?q=1%202&x=%41",
        (),
    )
    assert _request_target("https://us%40er:p%3Ass@example.com/h") == (
        "/h",
        ((b"authorization", b"Basic dXNAZXI6cDpzcw=="),),  # us@er:p:ss
    )


async def test_the_target_check_names_the_addresses_to_connect_to() -> None:
    assert await check_target("http://127.0.0.1:9/hook", allow_private=True) == []
    assert await check_target("https://93.184.215.14/hook", allow_private=False) == [
        "93.184.215.14"
    ]
    assert await check_target(
        "https://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]/", allow_private=False
    ) == ["2606:2800:21f:cb07:6820:80da:af6b:8b2c"]


def test_a_retry_after_of_unicode_digits_is_ignored_not_a_crash() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert retry_after_seconds("120", now) == 120.0
    assert retry_after_seconds("\u00b2", now) is None  # isdigit(), but float() refuses it
    assert retry_after_seconds("Thu, 01 Jan 2026 00:01:00 GMT", now) == 60.0
