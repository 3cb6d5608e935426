"""A short path for the few routes called so often that the framework's cost per request matters.

Every agent heartbeats every few seconds: at a thousand hosts that is hundreds of requests a
second, and FastAPI's routing, dependency solving and response re-validation cost more CPU than
the heartbeat's own work. A hot route is answered here, inside the request-context middleware
(so request id, body limit, unstorable-text check and metrics are the same as for every route)
and in front of the unit of work and FastAPI. It keeps the API's conventions:

- one write transaction, committed before the answer is sent, rolled back on any error;
- errors in the route's dialect (server/errors.py), validation problems worded as FastAPI's are;
- the route stays declared in FastAPI, with the same handler logic, for ``/openapi.json``.

A hot route gets the request's scope, its body (read and size-checked by the request context),
``receive`` and ``send``, and answers through ``send``; it parses a JSON body with
``parse_body`` and raises ``GpuyardError`` for a refusal, and an exception raised before it
started its answer becomes the error answer here (database errors as the unit of work answers
them). A route that streams its answer marks the scope with ``answering(scope)`` once it has
started, so a late failure closes the connection instead.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from gpuyard.server.errors import Problem, Refusal, validation_problem
from gpuyard.server.middleware.asgi import ASGIApp, Receive, Scope, Send, header, state

HotRoute = Callable[[Scope, bytes, Receive, Send], Awaitable[None]]
M = TypeVar("M", bound=BaseModel)


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
            raise Refusal(
                Problem(400, "request body is not valid UTF-8 JSON", "invalid_json")
            ) from None
        except ValidationError as exc:
            problems = [{**p, "loc": ("body", *p["loc"])} for p in exc.errors(include_url=False)]
    raise Refusal(validation_problem(problems, content_type))


@dataclass(frozen=True, slots=True)
class MatchedRoute:
    """What metrics see as the matched route (FastAPI's routes have ``path`` too)."""

    path: str


def answering(scope: Scope) -> None:
    """The route has started its answer: a failure now can only cut the connection."""
    state(scope)["answering"] = True


class HotRoutesMiddleware:
    def __init__(self, app: ASGIApp, *, routes: Mapping[tuple[str, str], HotRoute]) -> None:
        self.app = app
        self.routes = dict(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = None
        if scope["type"] == "http":
            route = self.routes.get((scope["method"], scope["path"]))
        if route is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = MatchedRoute(scope["path"])
        await route(scope, state(scope).get("body", b""), receive, send)
