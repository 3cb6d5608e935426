"""Sends webhook deliveries (the outbox rows ``events.record`` fans out), signed per Standard
Webhooks, and retries them on a schedule.

A delivery is due while ``pending`` at its ``next_run_at``: the first attempt at once, then after
5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h and 24 h (each plus up to 10% jitter, and never
sooner than a ``Retry-After`` the receiver asked for); after the tenth failure it is ``failed``.
A 2xx answer delivers it. A 410 Gone disables the endpoint at once; so do about five days of
failures in a row. Every attempt is recorded. The POST happens outside any transaction, under the
reconciler's lease; a replica that dies mid-attempt leaves the delivery to be tried again
(delivery is at least once: receivers deduplicate on ``webhook-id``).

The POSTs go through gpuyard's own HTTP/1.1 client (``gpuyard.http1``), kept for the dispatcher's
lifetime: keep-alive connections per origin, at most ``PER_ORIGIN`` requests in flight to one
origin at once, each attempt bounded by the timeout from its connection to its answer's end. An
attempt connects to an address the target check just passed (no DNS rebinding in between); a
redirect is not followed (it could lead past the check).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import random
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import httpx
from sqlalchemy import ColumnElement, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gpuyard.core.clock import rfc3339
from gpuyard.core.errors import InvalidRequest
from gpuyard.core.webhook_signing import headers as signed_headers
from gpuyard.http1.client import ConnectError, HttpClient, HttpError
from gpuyard.server import orm
from gpuyard.server.controllers.base import Reconciler
from gpuyard.server.services import events
from gpuyard.server.services.webhook_targets import check_target

SCHEDULE = (0, 5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)  # seconds before attempt n
JITTER = 0.1
DISABLE_AFTER = timedelta(days=5)
TIMEOUT_SECONDS = 15.0
MAX_ERROR = 500
PER_ORIGIN = 16  # requests in flight to one origin at once (and idle connections kept for it)
MAX_ANSWER_BODY = 1 << 16  # bytes of an answer's body read (and dropped) to keep its connection
USER_AGENT = (b"user-agent", b"gpuyard-webhooks")


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
    if value.isascii() and value.isdigit():  # not "²": float() refuses it
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
        self._tls = httpx.create_ssl_context(trust_env=False)  # httpx's CA bundle, loaded once
        self._http = self._new_http()
        self._slots: dict[str, tuple[asyncio.Semaphore, list[int]]] = {}

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

    async def run(self) -> None:
        try:
            await super().run()
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Close the idle keep-alive connections (a later attempt opens new ones)."""
        closing, self._http = self._http, self._new_http()
        await closing.aclose()

    def _new_http(self) -> HttpClient:
        return HttpClient(
            connect_timeout=self.timeout_seconds,
            read_timeout=self.timeout_seconds,
            max_idle=PER_ORIGIN,
            tls=self._tls,
        )

    async def process(self, item: Outgoing) -> Answer:
        if item.endpoint_id is None:
            return Answer(None, "the endpoint is disabled or gone", None, 0)
        started = time.perf_counter()
        try:
            addresses = await check_target(item.url, allow_private=self.allow_private)
            path, extra = _request_target(item.url)
        except InvalidRequest as exc:
            return Answer(None, exc.message[:MAX_ERROR], None, 0)
        stamp = int(self.clock.now().timestamp())
        sent = signed_headers(list(item.secrets), item.event_id, stamp, item.body)
        headers = [(k.encode(), v.encode()) for k, v in sent.items()]
        headers += (USER_AGENT, *extra)
        try:
            async with self._slot(item.url), asyncio.timeout(self.timeout_seconds):
                status, answer = await self._post(item, path, headers, addresses or [None])
        except TimeoutError:
            error = f"Timeout: no answer within {self.timeout_seconds:g} s"
            return Answer(None, error, None, _ms(started))
        except HttpError as exc:
            error = f"{type(exc).__name__}: {exc}"[:MAX_ERROR]
            return Answer(None, error, None, _ms(started))
        retry_after = retry_after_seconds(answer.get("retry-after"), self.clock.now())
        return Answer(status, None, retry_after, _ms(started))

    async def _post(
        self,
        item: Outgoing,
        path: str,
        headers: list[tuple[bytes, bytes]],
        addresses: Sequence[str | None],
    ) -> tuple[int, dict[str, str]]:
        """POST to the first of ``addresses`` that takes a connection (None: the URL's host);
        the answer's status and headers, its body read up to ``MAX_ANSWER_BODY`` and dropped."""
        for i, address in enumerate(addresses):
            try:
                response = await self._http.request(
                    item.url, "POST", path, headers, item.body, connect_to=address,
                    resend_if_stale=True,  # at least once: a kept connection's race is no answer
                )  # fmt: skip
            except ConnectError:
                if i + 1 == len(addresses):
                    raise
                continue  # nothing was sent: the next address
            try:
                read = 0
                while read <= MAX_ANSWER_BODY and (chunk := await response.read()):
                    read += len(chunk)
            finally:
                response.close()  # an answer not read to its end closes its connection
            return response.status_code, response.headers
        raise AssertionError("unreachable")  # pragma: no cover

    @contextlib.asynccontextmanager
    async def _slot(self, url: str) -> AsyncIterator[None]:
        """One of ``PER_ORIGIN`` places for a request to the origin of ``url``."""
        parts = urlsplit(url)
        key = f"{parts.scheme}://{parts.netloc}"
        entry = self._slots.get(key)
        if entry is None:
            entry = self._slots[key] = (asyncio.Semaphore(PER_ORIGIN), [0])
        semaphore, users = entry
        users[0] += 1
        try:
            async with semaphore:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self._slots[key]

    async def apply(
        self, session: AsyncSession, row: orm.WebhookDelivery, item: Outgoing, result: Answer
    ) -> None:
        await self.apply_all(session, [(row, item, result)])

    async def apply_all(
        self,
        session: AsyncSession,
        applies: list[tuple[orm.WebhookDelivery, Outgoing, Answer]],
    ) -> None:
        """Every attempt of a batch recorded by one INSERT, its deliveries updated by one
        UPDATE by key (many parameter sets); the endpoints, locked, through the ORM."""
        now = self.clock.now()
        attempts: list[dict[str, Any]] = []
        changes: list[dict[str, Any]] = []
        for row, item, result in applies:
            number = row.attempts + 1
            attempts.append(
                {
                    "delivery_id": row.id,
                    "number": number,
                    "status_code": result.status_code,
                    "error": result.error,
                    "duration_ms": result.duration_ms,
                    "created_at": now,
                }
            )
            status, next_run_at = await self._outcome(session, item, result, number, now)
            changes.append(
                {
                    "pk": row.pk,
                    "attempts": number,
                    "updated_at": now,
                    "last_status_code": result.status_code,
                    "last_error": result.error,
                    "status": status,
                    "delivered_at": now if status == "succeeded" else row.delivered_at,
                    "next_run_at": next_run_at if status == "pending" else row.next_run_at,
                }
            )
        if attempts:
            await session.execute(insert(orm.WebhookAttempt), attempts)
            await session.execute(update(orm.WebhookDelivery), changes)

    async def _outcome(
        self, session: AsyncSession, item: Outgoing, result: Answer, number: int, now: datetime
    ) -> tuple[str, datetime | None]:
        """The delivery's status after attempt ``number`` and, while pending, when the next is
        due; the endpoint's failure streak (and a 410's or five days' disabling) recorded."""
        if item.endpoint_id is None:
            return "failed", None
        endpoint = await _endpoint(session, item.endpoint_id, lock=True)
        if endpoint is None:
            return "failed", None
        if result.delivered:
            endpoint.failing_since = None
            return "succeeded", None
        endpoint.failing_since = endpoint.failing_since or now
        if result.status_code == 410:
            await self._disable(session, endpoint, "the endpoint answered 410 Gone", now)
        elif now - endpoint.failing_since >= DISABLE_AFTER:
            await self._disable(session, endpoint, "every attempt failed for five days", now)
        if not endpoint.enabled or number >= len(SCHEDULE):
            return "failed", None
        wait = SCHEDULE[number] * (1 + JITTER * self.rng.random())
        if result.retry_after is not None:
            wait = max(wait, result.retry_after)
        return "pending", now + timedelta(seconds=wait)

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


@functools.lru_cache(maxsize=1024)
def _request_target(url: str) -> tuple[str, tuple[tuple[bytes, bytes], ...]]:
    """The path and query to request (percent-encoded as needed), and the ``authorization``
    header for credentials in the URL (``https://user:password@host/…``), as httpx sent them."""
    parts = urlsplit(url)
    safe = "/%!$&'()*+,;=:@-._~"
    target = quote(parts.path or "/", safe=safe)
    if parts.query:
        target += "?" + quote(parts.query, safe=safe + "?")
    extra: tuple[tuple[bytes, bytes], ...] = ()
    if parts.username is not None:
        user = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        extra = ((b"authorization", b"Basic " + base64.b64encode(user.encode())),)
    return target, extra


def _ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)
