"""A short path for the few routes called so often that the framework's cost per request matters.

Every agent heartbeats every few seconds: at a thousand hosts that is hundreds of requests a
second, and FastAPI's routing, dependency solving and response re-validation cost more CPU than
the heartbeat's own work. A hot route is answered here, inside the request-context middleware
(so request id, body limit, unstorable-text check and metrics are the same as for every route)
and in front of the unit of work and FastAPI. It keeps the API's conventions:

- one write transaction, committed before the answer is sent, rolled back on any error;
- errors in the route's dialect (server/errors.py), validation problems worded as FastAPI's are;
- the route stays declared in FastAPI, with the same handler logic, for ``/openapi.json``.

A hot handler gets the request's scope, its body and a session in a write transaction (opened
and ended here, as the unit of work does), and answers ``(status, JSON bytes)``; it parses the
body with ``parse_body`` and raises ``GpuyardError`` for a refusal.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gpuyard.core.errors import GpuyardError, RateLimited, Unavailable
from gpuyard.server.db import write_session
from gpuyard.server.errors import Problem, error_body, status_for, validation_problem
from gpuyard.server.middleware.asgi import ASGIApp, Receive, Scope, Send, header, send_bytes, state

log = logging.getLogger(__name__)

HotHandler = Callable[[Scope, bytes, AsyncSession], Awaitable[tuple[int, bytes]]]
M = TypeVar("M", bound=BaseModel)


class BadBody(Exception):
    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


def parse_body(scope: Scope, body: bytes, model: type[M]) -> M:
    """The JSON body as ``model``; ``BadBody`` worded as FastAPI's validation errors are."""
    content_type = header(scope, b"content-type") or ""
    problems: list[dict[str, Any]]
    if not body or (content_type and "json" not in content_type):
        problems = [{"type": "missing", "loc": ("body",), "msg": "Field required"}]
    else:
        try:  # parsed first, then validated: pydantic words its errors as it does for FastAPI
            return model.model_validate(json.loads(body), from_attributes=True)
        except json.JSONDecodeError as exc:
            problems = [
                {
                    "type": "json_invalid",
                    "loc": ("body", exc.pos),
                    "msg": "JSON decode error",
                    "ctx": {"error": exc.msg},
                }
            ]
        except (UnicodeDecodeError, RecursionError):  # as FastAPI answers a body it cannot parse
            raise BadBody(
                Problem(400, "request body is not valid UTF-8 JSON", "invalid_json")
            ) from None
        except ValidationError as exc:
            problems = [{**p, "loc": ("body", *p["loc"])} for p in exc.errors(include_url=False)]
    raise BadBody(validation_problem(problems, content_type))


@dataclass(frozen=True, slots=True)
class HotRoute:
    """What metrics see as the matched route (FastAPI's routes have ``path`` too)."""

    path: str


class HotRoutesMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        factory: async_sessionmaker[AsyncSession],
        routes: Mapping[tuple[str, str], HotHandler],
    ) -> None:
        self.app = app
        self.factory = factory
        self.routes = dict(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = None
        if scope["type"] == "http":
            handler = self.routes.get((scope["method"], scope["path"]))
        if handler is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = HotRoute(scope["path"])
        body: bytes = state(scope).get("body", b"")
        try:
            async with write_session(self.factory) as session:
                status, answer = await handler(scope, body, session)
        except GpuyardError as exc:
            extra = []
            if isinstance(exc, RateLimited | Unavailable) and exc.retry_after is not None:
                extra.append((b"retry-after", str(max(1, round(exc.retry_after))).encode()))
            problem = Problem(status_for(exc), exc.message, exc.code, exc.param)
            await _error(scope, send, problem, extra)
            return
        except BadBody as exc:
            await _error(scope, send, exc.problem)
            return
        except IntegrityError:
            log.info("commit conflict on %s %s", scope["method"], scope["path"], exc_info=True)
            message = "the request conflicted with a concurrent change; nothing was written"
            await _error(scope, send, Problem(409, message, "conflict"))
            return
        except OperationalError:
            log.exception("database error on %s %s", scope["method"], scope["path"])
            message = "the database could not commit the change; nothing was written"
            await _error(scope, send, Problem(503, message, "database_unavailable"))
            return
        except Exception:
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            message = "internal error; quote the request id when reporting it"
            await _error(scope, send, Problem(500, message, "internal_error"))
            return
        await send_bytes(send, status, answer)


async def _error(
    scope: Scope, send: Send, problem: Problem, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = error_body(
        scope["path"],
        problem.status,
        code=problem.code,
        message=problem.message,
        param=problem.param,
        request_id=state(scope).get("request_id"),
    )
    await send_bytes(send, problem.status, body, extra)
