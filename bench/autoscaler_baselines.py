"""The baselines, written from their published rules, each acting on a simulated ``Cluster``.

Each starts from the replicas the cluster has at the first step. All three scale a replica
count (there is no stopped worker to come back to: a new replica is a cold start) and may go to
zero replicas; from zero they scale up at once on the first request, as each does. Their
constants are their documented defaults:

* SkyServe's request-rate autoscaler: requests per second over a 60 s window, divided by
  ``target_qps_per_replica``; decisions every 20 s; up only after 300 s and down only after
  1200 s of consistent decisions.
* Knative's KPA: concurrency (requests in service and queued) averaged over a 60 s stable and a
  6 s panic window, divided by the container concurrency x 0.7 target utilisation, every 2 s;
  panic when the panic window wants 200% of the ready pods (then never down, for 60 s); down at
  most by half per tick; to zero after a 30 s grace.
* Ray Serve: ongoing requests (in service and queued) averaged over 30 s, divided by the target of
  2 per replica; up after 30 s and down after 600 s of consistent decisions.
"""

from __future__ import annotations

import math
from collections import deque

from autoscaler_cluster import READY, Cluster


class SkyServe:
    name = "SkyServe"

    def __init__(self, target_qps_per_replica: float) -> None:
        self.target_qps = target_qps_per_replica
        self.window, self.interval = 60.0, 20.0
        self.up_delay, self.down_delay = 300.0, 1200.0
        self.arrivals: deque[tuple[float, int]] = deque()
        self.target = -1  # the replicas found at the first step
        self.up_count = self.down_count = 0
        self.next_decision = 0.0

    def step(self, cluster: Cluster, now: float) -> None:
        if self.target < 0:
            self.target = len(cluster.active())
        self.arrivals.append((now, cluster.tick_arrivals))
        while self.arrivals and self.arrivals[0][0] <= now - self.window:
            self.arrivals.popleft()
        if self.target == 0 and cluster.queue:
            self.target = 1  # from zero at once
            cluster.scale_to(self.target)
        if now < self.next_decision:
            return
        self.next_decision = now + self.interval
        qps = sum(n for _, n in self.arrivals) / self.window
        wanted = math.ceil(qps / self.target_qps)
        if wanted > self.target:
            self.up_count, self.down_count = self.up_count + 1, 0
            if self.up_count >= self.up_delay / self.interval:
                self.target, self.up_count = wanted, 0
        elif wanted < self.target:
            self.down_count, self.up_count = self.down_count + 1, 0
            if self.down_count >= self.down_delay / self.interval:
                self.target, self.down_count = wanted, 0
        else:
            self.up_count = self.down_count = 0
        cluster.scale_to(self.target)


class KnativeKPA:
    name = "Knative KPA"

    def __init__(self, container_concurrency: int) -> None:
        self.target = container_concurrency * 0.7
        self.stable, self.panic_window, self.tick = 60.0, 6.0, 2.0
        self.panic_threshold, self.max_scale_down_rate, self.zero_grace = 2.0, 2.0, 30.0
        self.samples: deque[tuple[float, int]] = deque()
        self.panic_since: float | None = None
        self.desired = -1  # the replicas found at the first step
        self.zero_since: float | None = None
        self.next_tick = 0.0

    def _average(self, now: float, window: float) -> float:
        values = [c for t, c in self.samples if t > now - window]
        return sum(values) / len(values) if values else 0.0

    def step(self, cluster: Cluster, now: float) -> None:
        if self.desired < 0:
            self.desired = len(cluster.active())
        self.samples.append((now, cluster.concurrency()))
        while self.samples and self.samples[0][0] <= now - self.stable:
            self.samples.popleft()
        if now < self.next_tick:
            return
        self.next_tick = now + self.tick
        stable = math.ceil(self._average(now, self.stable) / self.target)
        panic = math.ceil(self._average(now, self.panic_window) / self.target)
        ready = max(1, len(cluster.in_state(READY)))
        if panic / ready >= self.panic_threshold:
            self.panic_since = now
        elif self.panic_since is not None and now - self.panic_since >= self.stable:
            self.panic_since = None
        if self.panic_since is not None:
            wanted = max(panic, self.desired)
        else:
            wanted = max(stable, math.ceil(self.desired / self.max_scale_down_rate))
        if wanted == 0 and self.desired > 0:
            # Down to zero only after the grace period with nothing to do.
            self.zero_since = self.zero_since if self.zero_since is not None else now
            if now - self.zero_since < self.zero_grace:
                wanted = self.desired
        else:
            self.zero_since = None
        self.desired = wanted
        cluster.scale_to(self.desired)


class RayServe:
    name = "Ray Serve"

    def __init__(self, target_ongoing_requests: float = 2.0) -> None:
        self.target = target_ongoing_requests
        self.look_back, self.up_delay, self.down_delay = 30.0, 30.0, 600.0
        self.samples: deque[tuple[float, int]] = deque()
        self.replicas = -1  # the replicas found at the first step
        self.up_since: float | None = None
        self.down_since: float | None = None

    def step(self, cluster: Cluster, now: float) -> None:
        if self.replicas < 0:
            self.replicas = len(cluster.active())
        self.samples.append((now, cluster.concurrency()))
        while self.samples and self.samples[0][0] <= now - self.look_back:
            self.samples.popleft()
        average = sum(c for _, c in self.samples) / len(self.samples)
        wanted = math.ceil(average / self.target)
        if self.replicas == 0 and cluster.queue:
            self.replicas, self.up_since = max(1, wanted), None  # from zero at once
        elif wanted > self.replicas:
            self.down_since = None
            self.up_since = self.up_since if self.up_since is not None else now
            if now - self.up_since >= self.up_delay:
                self.replicas, self.up_since = wanted, None
        elif wanted < self.replicas:
            self.up_since = None
            self.down_since = self.down_since if self.down_since is not None else now
            if now - self.down_since >= self.down_delay:
                self.replicas, self.down_since = wanted, None
        else:
            self.up_since = self.down_since = None
        cluster.scale_to(self.replicas)
