"""Host-header routing of cluster endpoints: with ``GPUYARD_ENDPOINT_DOMAIN`` set, a request to
``<slug>.<domain>`` (any case, any port) is served as ``/endpoints/<slug><path>``, the route that
proxies to that cluster's replicas.

Only a host of exactly one DNS label before the domain is rewritten. The bare domain, deeper names
and hosts that merely end with the domain's text (``evil-example.com`` for ``example.com``) pass
on untouched. It is the outermost layer, so the request id, body limit and error shape all see
the rewritten path.
"""

from __future__ import annotations

import re

from gpuyard.server.middleware.asgi import ASGIApp, Receive, Scope, Send, header

_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
PREFIX = "/endpoints/"


def _bare(host: str) -> str:
    """A host name without port, trailing dot or wildcard, lower case."""
    host = host.strip().lower()
    if not host.startswith("["):  # an IPv6 literal is never an endpoint host
        host = host.rsplit(":", 1)[0]
    return host.removeprefix("*.").strip(".")


def endpoint_slug(host: str | None, domain: str) -> str | None:
    """The cluster slug that ``host`` names under ``domain``, or None."""
    if not host or not domain:
        return None
    slug, dot, rest = _bare(host).partition(".")
    if not dot or rest != _bare(domain) or not _LABEL.match(slug):
        return None
    return slug


class EndpointHostMiddleware:
    def __init__(self, app: ASGIApp, *, domain: str | None) -> None:
        self.app = app
        self.domain = _bare(domain) if domain else ""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.domain and scope["type"] == "http":
            slug = endpoint_slug(header(scope, b"host"), self.domain)
            if slug is not None:
                raw_path = scope.get("raw_path") or scope["path"].encode()
                scope = {
                    **scope,
                    "path": f"{PREFIX}{slug}{scope['path']}",
                    "raw_path": f"{PREFIX}{slug}".encode() + raw_path,
                }
        await self.app(scope, receive, send)
