"""The Vast dialect: what the official ``vastai`` CLI and SDK call, as thin routers over the
same services as the native API (docs/vast-dialect.md).

- ``vast_offers``: offer search, renting an offer, GPU names;
- ``vast_instances``: listing (``/api/v1/instances/`` paged), reading and changing instances;
- ``vast_account``: the current user, SSH keys, API keys.

Errors under ``/api/v0/`` and ``/api/v1/`` are ``{"success": false, "error": code, "msg": text}``
(server/errors.py); the CLI prints ``msg``.
"""

from __future__ import annotations

from fastapi import APIRouter

from gpuyard.server.compat import vast_account, vast_instances, vast_offers

router = APIRouter()
for _part in (vast_offers, vast_instances, vast_account):
    router.include_router(_part.router)
