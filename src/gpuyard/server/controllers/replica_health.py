"""Health checks of cluster replicas: what is probed, how (HTTP), and what a result records.

A replica is probed when it runs, is not draining and its host is ready: ``GET health_path``
(2xx = ready) and, when its cluster names no models, ``GET /v1/models`` to discover them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

import httpx

from gpuyard.core.agent_protocol import HostStatus
from gpuyard.server import orm

HEALTH_TIMEOUT_S = 2.0


@dataclass(frozen=True, slots=True)
class Probe:
    replica_id: str
    url: str  # http://address:port
    health_path: str
    discover: bool


@dataclass(frozen=True, slots=True)
class ProbeResult:
    healthy: bool
    models: tuple[str, ...] | None


Prober = Callable[[Probe], Awaitable[ProbeResult]]


async def http_probe(probe: Probe, client: httpx.AsyncClient) -> ProbeResult:
    try:
        r = await client.get(probe.url + probe.health_path, timeout=HEALTH_TIMEOUT_S)
        healthy = r.status_code < 400
        models: tuple[str, ...] | None = None
        if healthy and probe.discover:
            m = await client.get(probe.url + "/v1/models", timeout=HEALTH_TIMEOUT_S)
            if m.status_code == 200:
                data = m.json().get("data", [])
                models = tuple(str(x["id"]) for x in data if isinstance(x, dict) and "id" in x)
        return ProbeResult(healthy=healthy, models=models)
    except (httpx.HTTPError, ValueError, TypeError, KeyError):
        return ProbeResult(healthy=False, models=None)


def probed(w: orm.Workload, h: orm.Host) -> bool:
    """Health-checked, and possibly routed to: running, not draining, on a ready host."""
    return w.state == "running" and w.drain_started_at is None and h.status == HostStatus.READY


def record_health(w: orm.Workload, h: orm.Host, found: ProbeResult | None, now: datetime) -> None:
    if not probed(w, h):
        w.ready = False  # a draining replica is never probed back to ready
    elif found is not None:
        w.ready = found.healthy
        w.health_checked_at = now
        w.health_failures = 0 if found.healthy else w.health_failures + 1
        if found.models is not None:
            w.served_models = list(found.models)
