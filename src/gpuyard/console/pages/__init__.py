"""One module per resource, in the navigation's order. A module has ``NAV`` (its menu entry)
and ``routes(wrap)`` (its Starlette routes; ``wrap`` turns a handler of a ``Visit`` into an
endpoint that signs in, checks CSRF and signs out on a dead key). A new resource is a module
here, its template, and a line in ``MODULES``."""

from __future__ import annotations

from gpuyard.console.pages import (
    api_keys,
    billing,
    clusters,
    endpoints,
    hosts,
    instances,
    join_tokens,
    marketplace,
    orgs,
    overview,
    playground,
    prices,
    ssh_keys,
    vector_store,
    webhooks,
)

MODULES = [
    overview,
    marketplace,
    instances,
    clusters,
    endpoints,
    playground,
    vector_store,
    billing,
    webhooks,
    api_keys,
    ssh_keys,
    hosts,
    join_tokens,
    prices,
    orgs,
]
