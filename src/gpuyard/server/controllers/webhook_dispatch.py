"""Sends webhook deliveries (the outbox rows ``events.record`` fans out), signed per Standard
Webhooks, and retries them on a schedule.

A delivery is due while ``pending`` at its ``next_run_at``: the first attempt at once, then after
5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h and 24 h (each plus up to 10% jitter, and never
sooner than a ``Retry-After`` the receiver asked for); after the tenth failure it is ``failed``.
A 2xx answer delivers it. A 410 Gone disables the endpoint at once; so do about five days of
failures in a row. Every attempt is recorded. The POST happens outside any transaction, under the
reconciler's lease; a replica that dies mid-attempt leaves the delivery to be tried again
(delivery is at least once: receivers deduplicate on ``webhook-id``).
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession

from gpuyard.core.clock import rfc3339
from gpuyard.core.errors import InvalidRequest
from gpuyard.core.webhook_signing import headers as signed_headers
from gpuyard.server import orm
from gpuyard.server.controllers.base import Reconciler
from gpuyard.server.services import events
from gpuyard.server.services.webhook_targets import check_target

SCHEDULE = (0, 5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)  # seconds before attempt n
JITTER = 0.1
DISABLE_AFTER = timedelta(days=5)
TIMEOUT_SECONDS = 15.0
MAX_ERROR = 500


@dataclass(frozen=True, slots=True)
class Outgoing:
    delivery_id: str
    endpoint_id: str | None  # None: the endpoint is gone or disabled
    url: str
    secrets: tuple[str, ...]
    event_id: str
    body: bytes


@dataclass(frozen=True, slots=True)
class Answer:
    status_code: int | None
    error: str | None
    retry_after: float | None
    duration_ms: int

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def payload(event: orm.Event) -> bytes:
    """The message body, the same on every attempt: ``{id, type, created_at, org_id, data}``,
    with Standard Webhooks' ``timestamp`` (the event's time) too."""
    data = dict(event.data)
    if event.subject_id is not None:
        data.setdefault("id", event.subject_id)
    when = rfc3339(event.created_at)
    body = {
        "id": event.id,
        "type": event.type,
        "created_at": when,
        "timestamp": when,
        "org_id": event.org_id,
        "data": data,
    }
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - now).total_seconds()) if when.tzinfo else None


class WebhookDispatcher(Reconciler[orm.WebhookDelivery, Outgoing, Answer]):
    name = "webhooks"
    model = orm.WebhookDelivery
    batch_size = 100
    lease = timedelta(seconds=60)
    apply_together = True  # a batch's attempts are written in one transaction

    def __init__(
        self,
        *,
        allow_private: bool = False,
        timeout_seconds: float = TIMEOUT_SECONDS,
        rng: random.Random | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        self.allow_private = allow_private
        self.timeout_seconds = timeout_seconds
        self.rng = rng or random.Random()
        self._client: httpx.AsyncClient | None = None
        self._tls = httpx.create_ssl_context(trust_env=False)  # loading CA certificates is slow

    def due(self) -> ColumnElement[bool]:
        return orm.WebhookDelivery.status == "pending"

    def snapshot(self, row: orm.WebhookDelivery) -> Outgoing:  # pragma: no cover - load is used
        raise NotImplementedError

    async def load(self, session: AsyncSession, row: orm.WebhookDelivery) -> Outgoing:
        return (await self.load_all(session, [row]))[0]

    async def load_all(
        self, session: AsyncSession, rows: list[orm.WebhookDelivery]
    ) -> list[Outgoing]:
        """A batch's endpoints and events, each read once (two statements for the batch)."""
        endpoint_ids = {row.endpoint_id for row in rows}
        endpoints = {
            e.id: e
            for e in await session.scalars(
                select(orm.WebhookEndpoint).where(orm.WebhookEndpoint.id.in_(endpoint_ids))
            )
        }
        event_ids = {row.event_id for row in rows}
        found = await session.scalars(select(orm.Event).where(orm.Event.id.in_(event_ids)))
        by_id = {event.id: event for event in found}
        now = self.clock.now()
        return [
            _outgoing(row, endpoints.get(row.endpoint_id), by_id.get(row.event_id), now)
            for row in rows
        ]

    async def step(self) -> int:
        """One batch, its attempts through one client (measured faster on a burst than a client
        kept across batches, whose pool grows slow with many idle connections); the client's
        TLS context is made once, for the dispatcher's lifetime."""
        async with self._new_client() as client:
            self._client = client
            try:
                return await super().step()
            finally:
                self._client = None

    def _new_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            timeout=self.timeout_seconds,
            follow_redirects=False,  # a redirect could lead past the target check
            trust_env=False,
            verify=self._tls,
        )

    async def aclose(self) -> None:
        """Nothing is kept between batches (kept for callers that close what they start)."""

    async def process(self, item: Outgoing) -> Answer:
        if item.endpoint_id is None:
            return Answer(None, "the endpoint is disabled or gone", None, 0)
        started = time.perf_counter()
        try:
            await check_target(item.url, allow_private=self.allow_private)
        except InvalidRequest as exc:
            return Answer(None, exc.message[:MAX_ERROR], None, 0)
        stamp = int(self.clock.now().timestamp())
        sent = signed_headers(list(item.secrets), item.event_id, stamp, item.body)
        sent["user-agent"] = "gpuyard-webhooks"
        try:
            if self._client is not None:
                response = await self._client.post(item.url, content=item.body, headers=sent)
            else:  # a single claim reconciled outside ``step``
                async with self._new_client() as client:
                    response = await client.post(item.url, content=item.body, headers=sent)
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:MAX_ERROR]
            return Answer(None, error, None, _ms(started))
        retry_after = retry_after_seconds(response.headers.get("retry-after"), self.clock.now())
        return Answer(response.status_code, None, retry_after, _ms(started))

    async def apply(
        self, session: AsyncSession, row: orm.WebhookDelivery, item: Outgoing, result: Answer
    ) -> None:
        now = self.clock.now()
        row.attempts += 1
        row.updated_at = now
        row.last_status_code = result.status_code
        row.last_error = result.error
        session.add(
            orm.WebhookAttempt(
                delivery_id=row.id,
                number=row.attempts,
                status_code=result.status_code,
                error=result.error,
                duration_ms=result.duration_ms,
                created_at=now,
            )
        )
        if item.endpoint_id is None:
            row.status = "failed"
            return
        endpoint = await _endpoint(session, item.endpoint_id, lock=True)
        if endpoint is None:
            row.status = "failed"
            return
        if result.delivered:
            row.status = "succeeded"
            row.delivered_at = now
            endpoint.failing_since = None
            return
        endpoint.failing_since = endpoint.failing_since or now
        if result.status_code == 410:
            await self._disable(session, endpoint, "the endpoint answered 410 Gone", now)
        elif now - endpoint.failing_since >= DISABLE_AFTER:
            await self._disable(session, endpoint, "every attempt failed for five days", now)
        if not endpoint.enabled or row.attempts >= len(SCHEDULE):
            row.status = "failed"
            return
        wait = SCHEDULE[row.attempts] * (1 + JITTER * self.rng.random())
        if result.retry_after is not None:
            wait = max(wait, result.retry_after)
        row.next_run_at = now + timedelta(seconds=wait)

    async def _disable(
        self, session: AsyncSession, endpoint: orm.WebhookEndpoint, reason: str, now: datetime
    ) -> None:
        if not endpoint.enabled:
            return
        endpoint.enabled = False
        endpoint.disabled_reason = reason
        endpoint.updated_at = now
        await events.record(
            session,
            clock=self.clock,
            org_id=endpoint.org_id,
            type="webhook.disabled",
            subject_id=endpoint.id,
            data={"url": endpoint.url, "reason": reason},
        )


async def _endpoint(
    session: AsyncSession, endpoint_id: str, *, lock: bool
) -> orm.WebhookEndpoint | None:
    """The endpoint, read once per transaction (a batch's deliveries mostly share a few)."""
    cache: dict[tuple[str, bool], orm.WebhookEndpoint | None] = session.info.setdefault(
        "gpuyard.webhook_endpoints", {}
    )
    if (endpoint_id, lock) not in cache:
        stmt = select(orm.WebhookEndpoint).where(orm.WebhookEndpoint.id == endpoint_id)
        cache[(endpoint_id, lock)] = await session.scalar(stmt.with_for_update() if lock else stmt)
    return cache[(endpoint_id, lock)]


def _outgoing(
    row: orm.WebhookDelivery,
    endpoint: orm.WebhookEndpoint | None,
    event: orm.Event | None,
    now: datetime,
) -> Outgoing:
    if endpoint is None or event is None or not endpoint.enabled:
        return Outgoing(row.id, None, "", (), row.event_id, b"")
    secrets = [endpoint.secret]
    if endpoint.previous_secret and (endpoint.previous_secret_until or now) > now:
        secrets.append(endpoint.previous_secret)
    return Outgoing(row.id, endpoint.id, endpoint.url, tuple(secrets), event.id, payload(event))


def _ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)
