"""The serverless autoscaler's policy: from an endpoint's knobs, its measured demand and its
workers, which workers to create, start, stop and destroy.

``plan(knobs, demand, workers, now)`` is a pure function: everything it needs (the load history
included) is passed in, nothing is remembered between calls, so the controller keeps the history
in the database and any process may plan for any endpoint. It follows Vast's serverless semantics
(DESIGN.md, "Serverless autoscaler"):

* load is in perf units per second (tokens/s for LLMs); a worker's ``perf`` is the most it serves;
* active capacity target = max(predicted load, ``min_load``) / ``target_util``, where the predicted
  load is the peak of the recent load (a short rolling mean, held for ``scale_down_hold`` seconds
  so capacity goes up at once and down only when the load has stayed low);
* total loaded capacity (active + cold) = max(active target over ``cold_horizon`` x ``cold_mult``,
  ``min_cold_load``), and at least ``cold_workers`` workers are kept loaded (ready or stopped with
  the model on disk, no GPU charge), all bounded by ``max_workers``;
* queue time over ``target_queue_time`` scales up at once, by enough to clear the queue;
* with ``min_load`` 0, the last active worker stops only after ``inactivity_timeout`` seconds
  without a request (never, when it is unset): scale to zero;
* up by best perf per dollar (stopped workers first: they load in seconds), down worst first;
* **a worker with requests in flight is never stopped or destroyed**;
* a worker that errs, or never finishes loading, or stops reporting, is replaced.

Worker states are Vast's, as its CLI and logs name them (lowercase on the wire)::

    creating       the instance is being created                          billed
    loading        docker pull and run                                    billed
    model_loading  the model loads for the first time                     billed
    idle           ready: model loaded, serving (Vast's "Ready (IDLE)")   billed
    starting       a stopped worker coming back to ready                  billed
    stopping       going to stopped                                       not on GPU
    stopped        stopped with the model loaded ("Inactive")             storage only
    updating       being updated and rebooted                             billed
    rebooting      restarting                                             billed
    destroying     going away                                             not billed
    error          failed; needs attention (it is destroyed and replaced) not billed

The controller applies a :class:`Plan`: it creates ``create`` new workers (choosing hosts by
perf per dollar, ``test_workers`` hosts first), starts the ``start`` ids, stops the ``stop`` ids
and destroys the ``destroy`` ids. A worker to stop or destroy must leave routing first; the
controller re-checks that it has no requests in flight before it acts, since a request may have
been routed between the plan and the act.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from gpuyard.core.autoscaling.load_reading import rolling_peak
from gpuyard.core.autoscaling.model import (
    BILLED_STATES,
    COLD_STATES,
    COMING_UP_STATES,
    DEFAULT_TUNING,
    FIRST_LOAD_STATES,
    GONE_STATES,
    READY_STATES,
    Demand,
    EndpointKnobs,
    LoadSample,
    Plan,
    PolicyTuning,
    WorkerState,
    WorkerView,
    knob_errors,
)
from gpuyard.core.autoscaling.planner import Planner

__all__ = [
    "BILLED_STATES",
    "COLD_STATES",
    "COMING_UP_STATES",
    "DEFAULT_TUNING",
    "FIRST_LOAD_STATES",
    "GONE_STATES",
    "READY_STATES",
    "Demand",
    "EndpointKnobs",
    "LoadSample",
    "Plan",
    "PolicyTuning",
    "WorkerState",
    "WorkerView",
    "knob_errors",
    "plan",
    "rolling_peak",
]


def plan(
    knobs: EndpointKnobs,
    demand: Demand,
    workers: Sequence[WorkerView],
    now: datetime,
    *,
    tuning: PolicyTuning = DEFAULT_TUNING,
) -> Plan:
    """Decide which workers to create, start, stop and destroy for one endpoint, now."""
    return Planner(knobs, demand, workers, now, tuning).run()
