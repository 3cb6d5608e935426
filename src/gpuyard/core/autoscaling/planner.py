"""One planning pass of the autoscaling policy (see the package's docstring for the rules)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime

from gpuyard.core.autoscaling.load_reading import rolling_peak
from gpuyard.core.autoscaling.model import (
    COMING_UP_STATES,
    READY_STATES,
    Demand,
    EndpointKnobs,
    Plan,
    PolicyTuning,
    WorkerState,
    WorkerView,
)

_EPSILON = 1e-9
_SOME_CAPACITY = 1e-6
"""An active target that asks for one worker when no perf has been measured yet."""


def _per_dollar(worker: WorkerView, perf: float) -> float:
    return perf / worker.price if worker.price > 0 else math.inf


class Planner:
    """One planning pass; a class only to share its inputs between its steps."""

    def __init__(
        self,
        knobs: EndpointKnobs,
        demand: Demand,
        workers: Sequence[WorkerView],
        now: datetime,
        tuning: PolicyTuning,
    ) -> None:
        self.knobs = knobs
        self.demand = demand
        self.now = now
        self.tuning = tuning
        self.reasons: list[str] = []
        self.destroy: list[str] = []
        measured = [w.perf for w in workers if w.perf is not None and w.perf > 0]
        self.typical_perf: float | None = (
            sum(measured) / len(measured) if measured else tuning.default_perf
        )
        self.all_workers = list(workers)
        self.workers = [w for w in workers if not self._retire(w)]
        self.ready = [w for w in self.workers if w.state in READY_STATES and self._reporting(w)]
        self.coming = [w for w in self.workers if w.state in COMING_UP_STATES]
        self.cold = [w for w in self.workers if w.state == WorkerState.STOPPED]
        self.stopping = [w for w in self.workers if w.state == WorkerState.STOPPING]

    # Which workers are lost: destroyed (when idle) and not counted.

    def _since(self, when: datetime | None) -> float:
        return (self.now - when).total_seconds() if when is not None else 0.0

    def _reporting(self, worker: WorkerView) -> bool:
        if worker.last_report_at is None:
            return True
        return self._since(worker.last_report_at) <= self.tuning.report_timeout

    def _retire(self, worker: WorkerView) -> bool:
        """True for a worker that counts for nothing; destroy it when nothing is in flight."""
        why = None
        if worker.state == WorkerState.DESTROYING:
            return True
        if worker.state == WorkerState.ERROR:
            why = "in error"
        elif (
            worker.state in COMING_UP_STATES
            and self._since(worker.state_since) > self.tuning.load_timeout
        ):
            why = f"not ready after {self.tuning.load_timeout:.0f} s"
        elif worker.state in READY_STATES and not self._reporting(worker):
            why = f"silent for over {self.tuning.report_timeout:.0f} s"
        if why is None:
            return False
        if worker.reqs_working == 0:
            self.destroy.append(worker.id)
            self.reasons.append(f"replace {worker.id}: {why}")
        return True

    def perf(self, worker: WorkerView) -> float:
        if worker.perf is not None and worker.perf > 0:
            return worker.perf
        return self.typical_perf or 0.0

    def capacity(self, workers: Sequence[WorkerView]) -> float:
        return sum(self.perf(w) for w in workers)

    def workers_for(self, load: float) -> int:
        """How many typical workers cover ``load`` (one when the perf is not known yet)."""
        if load <= 0:
            return 0
        if not self.typical_perf:
            return 1
        return math.ceil(load / self.typical_perf - 1e-9)

    # The targets.

    def predicted_load(self) -> float:
        """The held peak of the smoothed load, or the load of the last few seconds if higher
        (a burst is met at once, as Knative's panic window does)."""
        samples, tuning = self.demand.load_samples, self.tuning
        held = rolling_peak(samples, self.now, window=tuning.smoothing, span=tuning.scale_down_hold)
        if tuning.burst_window <= 0:
            return held
        return max(held, rolling_peak(samples, self.now, window=tuning.burst_window, span=0.0))

    def active_target(self, predicted: float) -> float:
        """Active capacity wanted (perf units/s), from the load, the queue and the waiting."""
        knobs = self.knobs
        target = max(predicted, knobs.min_load) / knobs.target_util
        ready = self.capacity(self.ready)
        if self.demand.queue_time > knobs.target_queue_time:
            # Up at once, by enough to clear what is queued over the backlog horizon; with no
            # worker ready, the queue's work over its age is the demand itself (from zero).
            queue_time = self.demand.queue_time
            backlog = self.demand.waiting_load or queue_time * ready
            horizon = max(knobs.target_queue_time, self.tuning.backlog_horizon)
            unmet = backlog / queue_time / knobs.target_util if ready <= 0 else 0.0
            wanted = ready + max(unmet + backlog / horizon, self.typical_perf or _SOME_CAPACITY)
            if wanted > target:
                self.reasons.append(
                    f"queue time {self.demand.queue_time:.1f} s over target "
                    f"{knobs.target_queue_time:.1f} s"
                )
                target = wanted
        if self.demand.waiting_requests > 0 and target <= 0:
            # Scale from zero: what waits needs at least one worker.
            target = max(self.typical_perf or 0.0, _SOME_CAPACITY)
            self.reasons.append(f"{self.demand.waiting_requests} requests wait for a worker")
        if target > 0 or self._inactive():
            return target
        # min_load is 0 and nothing is asked: keep the last active worker (if there is one)
        # until the endpoint has had no request for inactivity_timeout.
        active = self.ready + self.coming
        return min((self.perf(w) for w in active), default=0.0)

    def _inactive(self) -> bool:
        last = self.demand.last_request_at
        if last is None:
            return True
        timeout = self.knobs.inactivity_timeout
        return timeout is not None and self._since(last) >= timeout

    def loaded_target(self, active_target: float) -> float:
        knobs = self.knobs
        long_peak = rolling_peak(
            self.demand.load_samples,
            self.now,
            window=self.tuning.smoothing,
            span=self.tuning.cold_horizon,
        )
        horizon_target = max(long_peak, knobs.min_load) / knobs.target_util
        return max(max(horizon_target, active_target) * knobs.cold_mult, knobs.min_cold_load)

    # The pass.

    def run(self) -> Plan:
        predicted = self.predicted_load()
        active_target = self.active_target(predicted)
        loaded_target = self.loaded_target(active_target)
        if self.typical_perf is None:
            # Nothing measured yet: one worker is taken to cover the target, so workers come
            # one at a time until the first reports its perf, and only cold_workers are kept.
            self.typical_perf = max(active_target, _SOME_CAPACITY)
            loaded_target = 0.0
        start, create = self._scale_up(active_target)
        stop = self._scale_down(active_target) if not (start or create) else []
        create += self._fill_loaded(loaded_target, create)
        self._destroy_surplus(loaded_target, create, start)
        # max_workers bounds everything: all workers not on their way out, whatever their state.
        counted = [
            w
            for w in self.all_workers
            if w.state != WorkerState.DESTROYING and w.id not in self.destroy
        ]
        create = max(0, min(create, self.knobs.max_workers - len(counted)))
        return Plan(
            create=create,
            start=tuple(start),
            stop=tuple(stop),
            destroy=tuple(self.destroy),
            predicted_load=predicted,
            active_target=active_target,
            loaded_target=loaded_target,
            reasons=tuple(self.reasons),
        )

    def _scale_up(self, active_target: float) -> tuple[list[str], int]:
        have = self.capacity(self.ready + self.coming)
        if have + _EPSILON >= active_target:
            return [], 0
        # Stopped workers first (they load in seconds), best perf per dollar, then fastest.
        start: list[str] = []
        for worker in sorted(
            self.cold, key=lambda w: (-_per_dollar(w, self.perf(w)), w.load_time or 0.0, w.id)
        ):
            if have + _EPSILON >= active_target:
                break
            start.append(worker.id)
            have += self.perf(worker)
        create = 0
        if have + _EPSILON < active_target:
            create = self.workers_for(active_target - have)
        self.reasons.append(
            f"up to {active_target:.0f}/s active: start {len(start)}, create {create}"
        )
        return start, create

    def _scale_down(self, active_target: float) -> list[str]:
        """Idle ready workers to stop, worst perf per dollar first, while the rest still cover."""
        have = self.capacity(self.ready + self.coming)
        stop: list[str] = []
        for worker in sorted(
            self.ready, key=lambda w: (_per_dollar(w, self.perf(w)), w.cur_load, w.id)
        ):
            if worker.reqs_working > 0:
                continue  # never stopped with requests in flight
            if have - self.perf(worker) + _EPSILON < active_target:
                continue
            stop.append(worker.id)
            have -= self.perf(worker)
        if stop:
            self.reasons.append(f"down to {active_target:.0f}/s active: stop {len(stop)}")
        return stop

    def _loaded(self, create: int) -> tuple[float, int]:
        """Capacity and count of workers that are or will be loaded (ready, stopped, loading)."""
        perf = self.typical_perf or 0.0
        return self.capacity(self.workers) + create * perf, len(self.workers) + create

    def _fill_loaded(self, loaded_target: float, create: int) -> int:
        """More workers to create so that ``cold_workers`` and the loaded target are met."""
        perf = self.typical_perf or 0.0
        cap, count = self._loaded(create)
        counted = len(self.all_workers) - len(self.destroy) + create
        extra = 0
        while counted + extra < self.knobs.max_workers and (
            count + extra < self.knobs.cold_workers or cap + extra * perf + _EPSILON < loaded_target
        ):
            extra += 1
        if extra:
            self.reasons.append(f"create {extra} to keep {loaded_target:.0f}/s loaded")
        return extra

    def _destroy_surplus(self, loaded_target: float, create: int, start: list[str]) -> None:
        """Stopped workers beyond the loaded target and ``cold_workers`` go, worst first, once
        they have been stopped for ``destroy_after``."""
        cap, count = self._loaded(create)
        for worker in sorted(
            self.cold, key=lambda w: (_per_dollar(w, self.perf(w)), -(w.load_time or 0.0), w.id)
        ):
            if worker.id in start or worker.reqs_working > 0:
                continue
            if self._since(worker.state_since) < self.tuning.destroy_after:
                continue
            if count - 1 < self.knobs.cold_workers:
                break
            if cap - self.perf(worker) + _EPSILON < loaded_target:
                continue
            self.destroy.append(worker.id)
            self.reasons.append(f"destroy surplus stopped worker {worker.id}")
            cap -= self.perf(worker)
            count -= 1
