"""The web console: server-rendered pages over the public API, served at ``/console``.

``console_app(api)`` builds it around the ASGI app of the API it calls (the one it is mounted in);
it imports nothing of the server. Each resource is one module under ``pages/`` with its
templates; ``pages.MODULES`` lists them in the order of the navigation.
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from gpuyard.console import sign_in
from gpuyard.console.pages import MODULES
from gpuyard.console.web import with_visit

__all__ = ["console_app"]

_HEADERS = [
    # Scripts and styles of this origin only (none inline): an injected tag cannot run. Media
    # may be data: (the playground's speech is played from the page itself).
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"media-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; "
        b"form-action 'self'; base-uri 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]


def console_app(api: Any) -> Any:
    """The console's ASGI app; its pages call ``api`` (the app that mounts it)."""
    nav = [module.NAV for module in MODULES]
    routes: list[Any] = [*sign_in.routes]
    for module in MODULES:
        routes.extend(module.routes(lambda handle: with_visit(nav, handle)))
    routes.append(Mount("/static", StaticFiles(packages=[("gpuyard.console", "static")])))
    routes.append(Route("/", sign_in.home))
    inner = Starlette(routes=routes)

    async def console(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await inner(scope, receive, send)
            return
        scope["console.api_app"] = api
        static = scope["path"].startswith("/console/static/")

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.extend(h for h in _HEADERS if not (static and h[0] == b"cache-control"))
                message = {**message, "headers": headers}
            await send(message)

        await inner(scope, receive, send_with_headers)

    return console
