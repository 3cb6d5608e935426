"""gpuyard's autoscaler in the simulator: the real ``gpuyard.core.autoscaling.plan`` called on the
simulated clock, its plan applied to the simulated workers.

What the controller would hand the policy, the simulator hands it: load samples (one per
planning period: by default the tokens/s the workers are serving, what Vast's workers report as
their served rate, plus the queued work over the backlog horizon; ``signal="arrivals"``: the
work that arrived, in tokens/s), the queue (its oldest wait or the time its work needs on the
ready workers, whichever is larger; the requests and their work), the last request's time, and
each worker in Vast's states with its measured perf and load time.
"""

from __future__ import annotations

from collections import deque
from datetime import UTC, datetime, timedelta

from autoscaler_cluster import DRAINING, LOADING, READY, STARTING, STOPPED, Cluster

from gpuyard.core.autoscaling import (
    Demand,
    EndpointKnobs,
    LoadSample,
    Plan,
    PolicyTuning,
    WorkerState,
    WorkerView,
    plan,
)

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)

STATES = {
    LOADING: WorkerState.MODEL_LOADING,
    STARTING: WorkerState.STARTING,
    READY: WorkerState.IDLE,
    DRAINING: WorkerState.STOPPING,
    STOPPED: WorkerState.STOPPED,
}


def at(seconds: float) -> datetime:
    return EPOCH + timedelta(seconds=seconds)


class Gpuyard:
    name = "gpuyard"

    def __init__(
        self,
        knobs: EndpointKnobs,
        *,
        period: float = 2.0,
        tuning: PolicyTuning | None = None,
        signal: str = "served",
    ) -> None:
        self.knobs = knobs
        self.signal = signal
        self.tuning = tuning or PolicyTuning()
        self.period = period
        self.samples: deque[LoadSample] = deque()
        self.work = 0.0
        self.next_plan = 0.0
        self.plans = 0

    def step(self, cluster: Cluster, now: float) -> None:
        self.work += cluster.tick_work
        if now < self.next_plan:
            return
        self.next_plan = now + self.period
        if self.signal == "arrivals":
            load = self.work / self.period
        else:
            slot_rate = cluster.spec.perf / cluster.spec.slots
            served = sum(w.busy for w in cluster.workers.values()) * slot_rate
            # What is served cannot exceed the capacity: the queue's work shows the rest.
            load = served + cluster.queued_work / self.tuning.backlog_horizon
        self.samples.append(LoadSample(at(now), load))
        self.work = 0.0
        horizon = now - self.tuning.cold_horizon - self.tuning.smoothing
        while self.samples and self.samples[0].at <= at(horizon):
            self.samples.popleft()
        self.apply(
            cluster,
            plan(
                self.knobs, self.demand(cluster), self.views(cluster), at(now), tuning=self.tuning
            ),
        )
        self.plans += 1

    def demand(self, cluster: Cluster) -> Demand:
        ready_perf = sum(cluster.spec.perf for w in cluster.in_state(READY))
        clear = cluster.queued_work / ready_perf if ready_perf else 0.0
        last = cluster.last_arrival_at
        return Demand(
            load_samples=tuple(self.samples),
            queue_time=max(cluster.oldest_wait(), clear),
            waiting_requests=len(cluster.queue),
            waiting_load=cluster.queued_work,
            last_request_at=at(last) if last is not None else None,
        )

    def views(self, cluster: Cluster) -> list[WorkerView]:
        spec = cluster.spec
        return [
            WorkerView(
                id=w.id,
                state=STATES[w.state],
                perf=spec.perf if w.served else None,
                cur_load=w.busy * spec.perf / spec.slots,
                reqs_working=w.busy,
                load_time=w.load_time,
                price=spec.price,
                state_since=at(w.since),
            )
            for w in cluster.workers.values()
            if w.state in STATES
        ]

    def apply(self, cluster: Cluster, decision: Plan) -> None:
        for wid in decision.stop:
            assert cluster.workers[wid].busy == 0, "plan stopped a worker with requests in flight"
            cluster.stop(wid)
        for wid in decision.destroy:
            assert cluster.workers[wid].busy == 0, "plan destroyed a worker with requests in flight"
            cluster.destroy(wid)
        for wid in decision.start:
            cluster.start(wid)
        cluster.create(decision.create)
