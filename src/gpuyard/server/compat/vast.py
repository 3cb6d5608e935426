"""The Vast dialect: what the official ``vastai`` CLI and SDK call, as thin routers over the
same services as the native API (docs/vast-dialect.md).

- ``vast_offers``: offer search, renting an offer, GPU names;
- ``vast_instances``: listing (``/api/v1/instances/`` paged), reading and changing instances;
- ``vast_account``: the current user, SSH keys, API keys;
- ``vast_billing``: billing history (``show invoices``, ``show invoices-v1``);
- ``vast_funds``: credit and earnings (``transfer credit``, ``show deposit``, ``show earnings``);
- ``vast_endpoints``: serverless endpoints, workergroups and templates;
- ``vast_autoscaler``: routing, worker reports, worker lists and logs (Vast's autoscaler).

Errors under ``/api/v0/`` and ``/api/v1/`` are ``{"success": false, "error": code, "msg": text}``
(server/errors.py); the CLI prints ``msg``.
"""

from __future__ import annotations

from fastapi import APIRouter, Security

from gpuyard.server.compat import (
    vast_account,
    vast_autoscaler,
    vast_billing,
    vast_endpoints,
    vast_funds,
    vast_instances,
    vast_offers,
)
from gpuyard.server.deps import vast_query_key

# Every Vast route that needs a key takes it as Bearer (declared by the caller dependency) or
# as ?api_key= (declared here).
_keyed = APIRouter(dependencies=[Security(vast_query_key)])
_parts = (vast_offers, vast_instances, vast_account, vast_billing, vast_funds, vast_endpoints)
for _part in _parts:
    _keyed.include_router(_part.router)
router = APIRouter()
router.include_router(vast_offers.public)
router.include_router(_keyed)
router.include_router(vast_autoscaler.router)  # keyed per route: workers report with tokens
