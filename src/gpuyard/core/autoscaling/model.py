"""The autoscaling policy's inputs and output: an endpoint's knobs, its measured demand, its
workers as the policy sees them, and the plan."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class WorkerState(StrEnum):
    CREATING = "creating"
    LOADING = "loading"
    MODEL_LOADING = "model_loading"
    IDLE = "idle"
    STARTING = "starting"
    STOPPING = "stopping"
    STOPPED = "stopped"
    UPDATING = "updating"
    REBOOTING = "rebooting"
    DESTROYING = "destroying"
    ERROR = "error"


READY_STATES = frozenset({WorkerState.IDLE})
"""Serving requests now."""

COMING_UP_STATES = frozenset(
    {
        WorkerState.CREATING,
        WorkerState.LOADING,
        WorkerState.MODEL_LOADING,
        WorkerState.STARTING,
        WorkerState.UPDATING,
        WorkerState.REBOOTING,
    }
)
"""On their way to ready: counted as active capacity already asked for."""

FIRST_LOAD_STATES = frozenset(
    {WorkerState.CREATING, WorkerState.LOADING, WorkerState.MODEL_LOADING}
)
"""A new worker that has never been ready (its model is not on its disk yet)."""

COLD_STATES = frozenset({WorkerState.STOPPED, WorkerState.STOPPING})
"""Loaded but stopped: start in seconds, no GPU charge."""

BILLED_STATES = READY_STATES | COMING_UP_STATES
"""States that hold a GPU (what GPU-seconds count)."""

GONE_STATES = frozenset({WorkerState.DESTROYING, WorkerState.ERROR})


MAX_WORKERS = 10_000
"""The most workers one endpoint may ask for (``max_workers``, ``cold_workers``)."""


@dataclass(frozen=True, slots=True)
class EndpointKnobs:
    """An endpoint's autoscaling fields, as Vast names them (defaults: Vast's CLI and docs).

    ``min_load``, ``min_cold_load``: load floors (perf units/s) for active and for loaded capacity.
    ``target_util``: the share of active capacity the load may use, in (0, 1].
    ``cold_mult``: loaded (active + stopped) capacity as a multiple of the active target.
    ``cold_workers``: workers kept loaded (ready or stopped) before any may be destroyed.
    ``max_workers``: a hard bound on all workers of the endpoint, whatever their state.
    ``max_queue_time``: the most seconds a worker queues a request (it answers 429 past it).
    ``target_queue_time``: queue time past which the endpoint scales up at once.
    ``inactivity_timeout``: seconds without a request before the last active worker may stop
    (with ``min_load`` 0); ``None`` never scales to zero active workers.
    """

    min_load: float = 1.0
    min_cold_load: float = 0.0
    target_util: float = 0.9
    cold_mult: float = 3.0
    cold_workers: int = 5
    max_workers: int = 20
    max_queue_time: float = 30.0
    target_queue_time: float = 10.0
    inactivity_timeout: float | None = None


def knob_errors(knobs: EndpointKnobs) -> dict[str, str]:
    """Why these knobs are invalid, by field name (empty when they are fine)."""
    errors: dict[str, str] = {}
    for name in ("min_load", "min_cold_load", "max_queue_time", "target_queue_time"):
        value = getattr(knobs, name)
        if not math.isfinite(value) or value < 0:
            errors[name] = f"{name} must be a number >= 0"
    if not (0 < knobs.target_util <= 1):
        errors["target_util"] = "target_util must be in (0, 1]"
    if not math.isfinite(knobs.cold_mult) or knobs.cold_mult < 1:
        errors["cold_mult"] = "cold_mult must be >= 1"
    if not 0 <= knobs.cold_workers <= MAX_WORKERS:
        errors["cold_workers"] = f"cold_workers must be between 0 and {MAX_WORKERS}"
    if not 0 <= knobs.max_workers <= MAX_WORKERS:
        errors["max_workers"] = f"max_workers must be between 0 and {MAX_WORKERS}"
    elif knobs.max_workers < knobs.cold_workers:
        errors["max_workers"] = "max_workers must be >= cold_workers"
    timeout = knobs.inactivity_timeout
    if timeout is not None and (not math.isfinite(timeout) or timeout < 0):
        errors["inactivity_timeout"] = "inactivity_timeout must be a number >= 0"
    return errors


@dataclass(frozen=True, slots=True)
class PolicyTuning:
    """How the policy reads the load: gpuyard's own settings, not endpoint fields.

    ``smoothing``: seconds of the rolling mean the load is read through.
    ``burst_window``: seconds of the short mean that scales up at once when it is over the
    smoothed load (0: none).
    ``scale_down_hold``: seconds the smoothed load must stay low before active capacity goes down
    (its peak over this span is the predicted load).
    ``cold_horizon``: seconds of history the loaded (cold) capacity plans for.
    ``destroy_after``: seconds a surplus stopped worker stays before it is destroyed.
    ``load_timeout``: seconds a worker may take to become ready before it is replaced.
    ``report_timeout``: seconds a ready worker may go without a report before it is replaced.
    ``backlog_horizon``: seconds over which queued work is to be cleared when the queue time is
    over target (at least ``target_queue_time``).
    ``default_perf``: perf assumed for a worker when none has been measured on the endpoint
    (``None``: size by one worker at a time until one is measured).
    """

    smoothing: float = 60.0
    scale_down_hold: float = 30.0
    burst_window: float = 10.0
    cold_horizon: float = 3600.0
    destroy_after: float = 600.0
    load_timeout: float = 1800.0
    report_timeout: float = 120.0
    backlog_horizon: float = 30.0
    default_perf: float | None = None


DEFAULT_TUNING = PolicyTuning()


@dataclass(frozen=True, slots=True)
class LoadSample:
    """The load (perf units/s) measured over the sampling period that ends at ``at``."""

    at: datetime
    load: float


@dataclass(frozen=True, slots=True)
class Demand:
    """What the endpoint is asked to do, as measured.

    ``load_samples``: the load history, oldest first, sampled at a steady period (one every few
    seconds); the policy reads up to ``PolicyTuning.cold_horizon`` seconds of it. Best measured
    as the work the workers are serving per second (the sum of their reported served rates)
    plus the work queued at the router over ``PolicyTuning.backlog_horizon``: smoother than the
    arrival rate, and it sees the slots long requests hold.
    ``queue_time``: seconds the queue needs to clear now: the most any ready worker reports
    (its queued work over its perf) or the longest a routed request has waited for a worker.
    ``waiting_requests``: requests held at the router because no worker is ready.
    ``waiting_load``: their work, in perf units.
    ``last_request_at``: when the endpoint last received a request (``None``: never).
    """

    load_samples: Sequence[LoadSample] = ()
    queue_time: float = 0.0
    waiting_requests: int = 0
    waiting_load: float = 0.0
    last_request_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class WorkerView:
    """One worker as the policy sees it.

    ``perf``: its measured max perf (perf units/s), ``None`` until measured.
    ``cur_load``: the load it receives now (perf units/s). ``reqs_working``: requests in flight.
    ``load_time``: seconds it last took to become ready (from stopped, once it has been).
    ``price``: what it costs per hour while billed, in any one unit (only ratios matter).
    ``state_since``: when it entered ``state``; ``last_report_at``: its last status report.
    """

    id: str
    state: WorkerState
    perf: float | None = None
    cur_load: float = 0.0
    reqs_working: int = 0
    load_time: float | None = None
    price: float = 1.0
    state_since: datetime | None = None
    last_report_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    """What to do now. ``create`` is a count (the controller picks hosts); the rest are ids.

    ``predicted_load``, ``active_target`` and ``loaded_target`` (perf units/s) and ``reasons``
    explain the decision, for the endpoint's log.
    """

    create: int = 0
    start: tuple[str, ...] = ()
    stop: tuple[str, ...] = ()
    destroy: tuple[str, ...] = ()
    predicted_load: float = 0.0
    active_target: float = 0.0
    loaded_target: float = 0.0
    reasons: tuple[str, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not (self.create or self.start or self.stop or self.destroy)
