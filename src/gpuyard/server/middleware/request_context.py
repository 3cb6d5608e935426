"""Outermost middleware: request id, body size limit, unstorable text, request metrics, and the
last word on errors.

The body of a request is read here, up to ``max_body_bytes``; a larger one is answered 413 at once
(by ``Content-Length`` when given, else when the stream passes the limit). The body is then handed
on unchanged, and kept in the request state for the idempotency layer. A request carrying text no
database can hold (a NUL, an unpaired surrogate) is answered 400 (see ``invalid_text``).

An exception that reaches this layer before any answer was started is answered here
(``errors.error_answer``); one raised after a complete answer (the framework raises the errors
its handler has just answered again) ends here, so the keep-alive connection stays open for the
client's next request. Only an answer cut short raises on, for the server to close the
connection: a client must not take half an answer for a whole one.
"""

from __future__ import annotations

import logging
import re
import time

from gpuyard.core.errors import InvalidRequest
from gpuyard.core.ids import new_id
from gpuyard.server.errors import Problem, Refusal, send_error
from gpuyard.server.metrics import Metrics
from gpuyard.server.middleware.asgi import (
    ASGIApp,
    Message,
    Receive,
    Scope,
    Send,
    header,
    state,
)
from gpuyard.server.middleware.invalid_text import invalid_text

log = logging.getLogger(__name__)
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_BODY_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


class _TooLarge(Exception):
    pass


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int, metrics: Metrics) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = header(scope, b"x-request-id")
        rid = incoming if incoming and _REQUEST_ID_RE.match(incoming) else new_id("req")
        st = state(scope)
        st["request_id"] = rid
        rid_header = (b"x-request-id", rid.encode())
        started = time.perf_counter()
        status_seen = 0  # no answer started yet
        complete = False

        async def send_with_id(message: Message) -> None:
            nonlocal status_seen, complete
            if message["type"] == "http.response.start":
                status_seen = message["status"]
                headers = message.get("headers", [])
                if not any(k.lower() == b"x-request-id" for k, _ in headers):
                    message["headers"] = [*headers, rid_header]
            elif not message.get("more_body", False):
                complete = True
            await send(message)

        try:
            body = b""
            if scope["method"] in _BODY_METHODS:
                try:
                    body = await self._read_body(scope, receive)
                except _TooLarge:
                    await _drain(receive)
                    raise Refusal(
                        Problem(
                            413,
                            f"request body is larger than {self.max_body_bytes} bytes",
                            "payload_too_large",
                        ),
                        {"connection": "close"},
                    ) from None
                st["body"] = body
                receive = _replay(body, receive)
            problem = invalid_text(scope, body)
            if problem is not None:
                raise InvalidRequest(problem)
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            if not status_seen:  # nothing answered yet: the error is the answer
                await send_error(send_with_id, scope, exc)
            elif not complete:
                raise  # an answer cut short: only closing the connection can tell the client
            elif st.get("error") is not exc:  # answered, then failed: still worth knowing
                log.error(
                    "error after the answer to %s %s", scope["method"], scope["path"], exc_info=exc
                )
            # else the app's handler answered it (and logged it): the connection stays open
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.observe(
                scope["method"], template, status_seen or 500, time.perf_counter() - started
            )

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        declared = header(scope, b"content-length")
        if (
            declared is not None
            and declared.isascii()  # not "²", which isdigit() passes and int() refuses
            and declared.isdigit()
            and int(declared) > self.max_body_bytes
        ):
            raise _TooLarge
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise _TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


DRAIN_LIMIT = 32 * 1024 * 1024


async def _drain(receive: Receive) -> None:
    """Read and drop the rest of an oversize body (up to a cap), so the client, still sending,
    gets to read our 413 instead of a reset connection."""
    drained = 0
    while drained < DRAIN_LIMIT:
        message = await receive()
        if message["type"] == "http.disconnect" or not message.get("more_body", False):
            return
        drained += len(message.get("body", b""))


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
