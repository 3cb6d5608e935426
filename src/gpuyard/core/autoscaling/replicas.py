"""Autoscaling an inference cluster's replicas with the serverless policy (``plan``).

A cluster that opts in (``autoscaling: {min_replicas, max_replicas, target_concurrency,
inactivity_timeout}``) has its replica count driven by its measured load, the requests the
gateway has in flight to it. The policy's perf units are requests in flight: a replica serves
``target_concurrency`` of them, the load is the cluster's mean concurrency (request-seconds per
second), so the active target is ``max(load, min_replicas x target_concurrency)``, in replicas
``ceil(load / target_concurrency)`` bounded by ``min_replicas`` and ``max_replicas``. Replicas
have no cold (stopped) state: ``cold_mult`` is 1 and no capacity is kept loaded beyond the
active target. A replica is retired only when it has no request in flight, worst (newest) first.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from gpuyard.core.autoscaling.model import (
    Demand,
    EndpointKnobs,
    LoadSample,
    PolicyTuning,
    WorkerState,
    WorkerView,
)
from gpuyard.core.autoscaling.planner import Planner

MAX_REPLICAS = 64
"""The most replicas one cluster may have (``replicas``, ``max_replicas``)."""

FIELDS = ("min_replicas", "max_replicas", "target_concurrency", "inactivity_timeout")


@dataclass(frozen=True, slots=True)
class ReplicaAutoscaling:
    """A cluster's autoscaling settings.

    ``min_replicas``, ``max_replicas``: the bounds of the replica count (0 <= min <= max <= 64).
    ``target_concurrency``: requests in flight one replica is meant to serve (> 0).
    ``inactivity_timeout``: with ``min_replicas`` 0, seconds without a request before the last
    replica goes (``None``: never scale to zero).
    """

    min_replicas: int = 1
    max_replicas: int = 1
    target_concurrency: float = 4.0
    inactivity_timeout: float | None = 300.0

    def clamp(self, replicas: int) -> int:
        return max(self.min_replicas, min(replicas, self.max_replicas))


def autoscaling_errors(a: ReplicaAutoscaling) -> dict[str, str]:
    """Why these settings are invalid, by field name (empty when they are fine)."""
    errors: dict[str, str] = {}
    if not 0 <= a.min_replicas <= MAX_REPLICAS:
        errors["min_replicas"] = f"min_replicas must be between 0 and {MAX_REPLICAS}"
    if not 0 <= a.max_replicas <= MAX_REPLICAS:
        errors["max_replicas"] = f"max_replicas must be between 0 and {MAX_REPLICAS}"
    elif a.max_replicas < a.min_replicas:
        errors["max_replicas"] = "max_replicas must be >= min_replicas"
    if not math.isfinite(a.target_concurrency) or a.target_concurrency <= 0:
        errors["target_concurrency"] = "target_concurrency must be a number > 0"
    timeout = a.inactivity_timeout
    if timeout is not None and (not math.isfinite(timeout) or timeout < 0):
        errors["inactivity_timeout"] = "inactivity_timeout must be a number >= 0"
    return errors


@dataclass(frozen=True, slots=True)
class ReplicaLoad:
    """One live replica as the autoscaler sees it: ``ready`` (serving) or still coming up, and
    the requests in flight on it (what the gateways report)."""

    id: str
    ready: bool
    in_flight: int = 0


@dataclass(frozen=True, slots=True)
class ClusterDemand:
    """``samples``: the cluster's concurrency (requests in flight, mean) per sampling period,
    oldest first; ``waiting``: requests refused for want of a ready replica (scale from zero);
    ``last_request_at``: when the cluster last had a request."""

    samples: Sequence[LoadSample] = ()
    waiting: int = 0
    last_request_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ReplicaPlan:
    """How many replicas the cluster wants now, and which to retire first (idle ones)."""

    replicas: int
    retire: tuple[str, ...] = ()
    load: float = 0.0
    reasons: tuple[str, ...] = ()


TUNING = PolicyTuning(  # a replica's perf (default_perf) is its target_concurrency
    cold_horizon=0.0,  # nothing is kept loaded beyond the active target
    destroy_after=0.0,
    load_timeout=math.inf,  # the clusters controller replaces replicas that never get healthy
    report_timeout=math.inf,
)


def plan_replicas(
    a: ReplicaAutoscaling,
    demand: ClusterDemand,
    replicas: Sequence[ReplicaLoad],
    now: datetime,
) -> ReplicaPlan:
    """The replica count for a cluster now, through the serverless policy (``Planner``)."""
    per = a.target_concurrency
    knobs = EndpointKnobs(
        min_load=a.min_replicas * per,
        min_cold_load=0.0,
        target_util=1.0,
        cold_mult=1.0,
        cold_workers=0,
        max_workers=a.max_replicas,
        inactivity_timeout=a.inactivity_timeout,
    )
    views = [
        WorkerView(
            id=r.id,
            state=WorkerState.IDLE if r.ready else WorkerState.LOADING,
            perf=per,
            reqs_working=r.in_flight,
        )
        for r in replicas
    ]
    wanted = Demand(
        load_samples=demand.samples,
        waiting_requests=demand.waiting,
        waiting_load=float(demand.waiting),
        last_request_at=demand.last_request_at,
    )
    planned = Planner(knobs, wanted, views, now, replace(TUNING, default_perf=per)).run()
    count = a.clamp(len(replicas) + planned.create - len(planned.stop))
    return ReplicaPlan(
        replicas=count,
        retire=planned.stop,
        load=planned.predicted_load,
        reasons=planned.reasons,
    )
