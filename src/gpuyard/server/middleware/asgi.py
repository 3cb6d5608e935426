"""Small ASGI helpers shared by the middleware: header access and raw JSON responses."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            try:
                return str(value.decode("latin-1"))
            except UnicodeDecodeError:
                return None
    return None


def credential(scope: Scope) -> str | None:
    """The API key from ``Authorization: Bearer`` or, for the Vast dialect, ``?api_key=``."""
    value = header(scope, b"authorization")
    if value:
        scheme, _, token = value.partition(" ")
        return token.strip() if scheme.lower() == "bearer" else value.strip()
    query: bytes = scope.get("query_string", b"")
    if b"api_key" not in query:
        return None
    found = None
    for name, given in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if name == "api_key":
            found = given  # the last one, as Starlette's query_params.get gives it
    return found


def state(scope: Scope) -> dict[str, Any]:
    st: dict[str, Any] = scope.setdefault("state", {})
    return st


async def send_bytes(
    send: Send,
    status: int,
    body: bytes,
    headers: list[tuple[bytes, bytes]] | None = None,
    content_type: bytes = b"application/json",
) -> None:
    raw = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    raw += headers or []
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body, "more_body": False})
