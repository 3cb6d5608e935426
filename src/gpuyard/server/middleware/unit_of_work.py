"""One database transaction per API request, committed before the response leaves.

Routes get their session from :class:`RequestUnitOfWork` (``deps.Session``); it is opened on first
use. When the route has answered, a 2xx/3xx response commits and anything else rolls back, so bad
input never leaves a half-written row. The response is held until the commit succeeds; a failed
commit becomes an error response instead. Routes that never open the session (the inference proxy,
health checks) stream through untouched.

A request's transaction is a writer (``BEGIN IMMEDIATE`` on SQLite, which takes the database's
one write lock) unless its method only reads, or its route is marked ``@reads_only`` (a POST
that only searches, as ``POST /api/v0/bundles/``): those never wait behind another writer.

A POST with ``Idempotency-Key`` reserves its record in that same transaction, and the response is
stored in it before the commit: a replay exists exactly when the change does. The same key with a
different request is 409; a concurrent duplicate waits for the first and then replays its answer.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gpuyard.core.clock import Clock
from gpuyard.core.credentials import hash_secret
from gpuyard.core.errors import InvalidRequest
from gpuyard.server.db import begin_write
from gpuyard.server.errors import Problem, Refusal, send_error
from gpuyard.server.middleware.asgi import (
    ASGIApp,
    Message,
    Receive,
    Scope,
    Send,
    credential,
    header,
    state,
)
from gpuyard.server.services import idempotency

log = logging.getLogger(__name__)
_READ_METHODS = {"GET", "HEAD", "OPTIONS"}
_REPLAY_HEADERS = ("content-type", "location")


_READS_ONLY = "_gpuyard_reads_only"
EndpointT = TypeVar("EndpointT", bound=Callable[..., Any])


def reads_only(endpoint: EndpointT) -> EndpointT:
    """Mark a route whose method writes (a POST) but which only reads: its transaction is not a
    writer, so on SQLite it never waits for the write lock."""
    setattr(endpoint, _READS_ONLY, True)
    return endpoint


class RequestUnitOfWork:
    def __init__(
        self,
        factory: async_sessionmaker[AsyncSession],
        *,
        write: bool,
        scope: Scope | None = None,
    ) -> None:
        self._factory = factory
        self._write = write
        self._scope = scope  # routing adds the matched endpoint to it
        self.session: AsyncSession | None = None
        self._after: list[Callable[[], Awaitable[None]]] = []

    async def get(self) -> AsyncSession:
        if self.session is None:
            self.session = self._factory()
            if self._write and not self._reads_only():
                await begin_write(self.session)
        return self.session

    def _reads_only(self) -> bool:
        endpoint = self._scope.get("endpoint") if self._scope is not None else None
        return bool(getattr(endpoint, _READS_ONLY, False))

    def after_transaction(self, action: Callable[[], Awaitable[None]]) -> None:
        """Run ``action`` once the request's transaction has ended, before the response is sent
        (best effort, in its own transaction; e.g. ``last_used_at``)."""
        self._after.append(action)

    async def run_after(self) -> None:
        actions, self._after = self._after, []
        for action in actions:
            try:
                await action()
            except Exception:
                log.warning("after-response action failed", exc_info=True)

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()


class UnitOfWorkMiddleware:
    def __init__(
        self, app: ASGIApp, *, factory: async_sessionmaker[AsyncSession], clock: Clock
    ) -> None:
        self.app = app
        self.factory = factory
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        uow = RequestUnitOfWork(
            self.factory, write=scope["method"] not in _READ_METHODS, scope=scope
        )
        state(scope)["uow"] = uow
        try:
            await self._handle(scope, receive, send, uow)
        finally:
            await uow.close()
            await uow.run_after()

    async def _handle(
        self, scope: Scope, receive: Receive, send: Send, uow: RequestUnitOfWork
    ) -> None:
        idem = _idempotency_request(scope)
        if idem is not None:
            try:
                idempotency.check_key(idem.key)
            except InvalidRequest as exc:
                await send_error(send, scope, exc)
                return
            replayed = await self._reserve(scope, send, uow, idem)
            if replayed:
                return

        start: Message | None = None
        chunks: list[bytes] = []
        passthrough = False

        async def hold(message: Message) -> None:
            nonlocal start, passthrough
            if message["type"] == "http.response.start":
                if uow.session is None:
                    passthrough = True
                    await send(message)
                else:
                    start = message
                return
            if passthrough:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False) and start is not None:
                await self._finish(scope, send, uow, idem, start, b"".join(chunks))

        try:
            await self.app(scope, receive, hold)
        except BaseException:
            if uow.session is not None:
                await uow.session.rollback()
            raise

    async def _reserve(self, scope: Scope, send: Send, uow: RequestUnitOfWork, idem: _Idem) -> bool:
        """Reserve the key; True when the request was answered (replayed or refused)."""
        session = await uow.get()
        try:
            await idempotency.reserve(
                session,
                clock=self.clock,
                scope=idem.scope,
                key=idem.key,
                method=scope["method"],
                path=scope["path"],
                request_hash=idem.request_hash,
            )
            return False
        except IntegrityError:
            await session.rollback()
        stored = await idempotency.lookup(session, scope=idem.scope, key=idem.key)
        await session.rollback()
        if stored is None or stored.status_code is None:
            message = "a request with this Idempotency-Key is still in progress; retry later"
            await send_error(send, scope, Refusal(Problem(409, message, "idempotency_key_in_use")))
        elif stored.request_hash != idem.request_hash:
            message = "this Idempotency-Key was used with a different request"
            await send_error(send, scope, Refusal(Problem(409, message, "idempotency_key_reused")))
        else:
            headers = [(k.encode(), v.encode()) for k, v in stored.headers.items()]
            headers.append((b"idempotent-replayed", b"true"))
            await send(
                {
                    "type": "http.response.start",
                    "status": stored.status_code,
                    "headers": [*headers, (b"content-length", str(len(stored.body)).encode())],
                }
            )
            await send({"type": "http.response.body", "body": stored.body, "more_body": False})
        return True

    async def _finish(
        self,
        scope: Scope,
        send: Send,
        uow: RequestUnitOfWork,
        idem: _Idem | None,
        start: Message,
        body: bytes,
    ) -> None:
        session = uow.session
        assert session is not None
        status = int(start["status"])
        if status >= 400:
            await session.rollback()
        else:
            try:
                if idem is not None:
                    kept = {
                        k.decode(): v.decode()
                        for k, v in start.get("headers", [])
                        if k.decode().lower() in _REPLAY_HEADERS
                    }
                    await idempotency.complete(
                        session,
                        scope=idem.scope,
                        key=idem.key,
                        status_code=status,
                        headers=kept,
                        body=body,
                    )
                await session.commit()
            except (IntegrityError, OperationalError) as exc:  # 409 or 503, nothing written
                await session.rollback()
                await send_error(send, scope, exc)
                return
        await uow.run_after()
        await send(start)
        await send({"type": "http.response.body", "body": body, "more_body": False})


class _Idem:
    __slots__ = ("key", "request_hash", "scope")

    def __init__(self, key: str, scope: str, request_hash: str) -> None:
        self.key = key
        self.scope = scope
        self.request_hash = request_hash


def _idempotency_request(scope: Scope) -> _Idem | None:
    if scope["method"] != "POST":
        return None
    key = header(scope, b"idempotency-key")
    key_secret = credential(scope)
    if key is None or not key_secret:
        return None
    digest = hashlib.sha256()
    digest.update(scope["method"].encode() + b" " + scope["path"].encode() + b"?")
    digest.update(scope.get("query_string", b"") + b"\n")
    digest.update(state(scope).get("body", b""))
    return _Idem(key=key, scope=hash_secret(key_secret), request_hash=digest.hexdigest())
