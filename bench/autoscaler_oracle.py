"""A clairvoyant reference for the autoscaler simulator: what knowing the future buys.

It reads the trace ahead: at each second it wants the workers that the work arriving over the
next ``window`` seconds, from one warm start ahead on, needs at ``util``; it starts stopped workers
(creating them when none is stopped) and stops idle ones beyond that. No real policy can do
this; it bounds how few GPU-seconds a given queue delay can cost on this model.
"""

from __future__ import annotations

import bisect
import math

from autoscaler_cluster import READY, STOPPED, Cluster


class Oracle:
    def __init__(
        self,
        cluster_arrivals: list[float],
        works: list[float],
        *,
        util: float,
        window: float = 60.0,
    ) -> None:
        self.name = f"oracle at {util:.0%}"
        self.util = util
        self.window = window
        self.arrivals = cluster_arrivals
        self.cumulative = [0.0]
        for work in works:
            self.cumulative.append(self.cumulative[-1] + work)

    def _rate(self, start: float, end: float) -> float:
        i = bisect.bisect_left(self.arrivals, start)
        j = bisect.bisect_left(self.arrivals, end)
        return (self.cumulative[j] - self.cumulative[i]) / (end - start)

    def step(self, cluster: Cluster, now: float) -> None:
        ahead = now + cluster.spec.warm_start
        rate = max(self._rate(ahead, ahead + self.window), self._rate(now, now + self.window))
        wanted = math.ceil(rate / (cluster.spec.perf * self.util))
        active = cluster.active()
        if wanted > len(active):
            stopped = cluster.in_state(STOPPED)
            for worker in stopped[: wanted - len(active)]:
                cluster.start(worker.id)
            cluster.create(max(0, wanted - len(active) - len(stopped)))
        else:
            idle = [w for w in active if w.state == READY and w.busy == 0]
            for worker in idle[: len(active) - wanted]:
                cluster.stop(worker.id)
