"""Simulated serverless workers and the router's queue, on a simulated clock.

A worker is created from nothing (``cold_start`` seconds: pull and first model load), serves up
to ``slots`` requests at once, each taking ``work / (perf / slots)`` seconds (``perf``: tokens/s
at a full batch), can be stopped with its model kept on disk (no GPU charge) and started again in
``warm_start`` seconds, or destroyed. A worker that leaves service (stopped or destroyed) first
drains: it gets no new request and finishes those it has. Requests wait in one FIFO queue at the
router and go to the ready worker with the most free slots; a request's queue delay is the time
from its arrival to the start of its service.

Metrics count from ``measure_from`` on (a warm-up lets every policy reach its steady state
first). GPU-seconds count every second a worker holds a GPU: loading, starting, ready or draining.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass, field

from autoscaler_trace import Request

LOADING = "loading"  # from nothing
STARTING = "starting"  # from stopped, model on disk
READY = "ready"
DRAINING = "draining"
STOPPED = "stopped"
GONE = "gone"

ON_GPU = frozenset({LOADING, STARTING, READY, DRAINING})


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    perf: float = 1000.0  # tokens/s at a full batch
    slots: int = 8
    cold_start: float = 120.0
    warm_start: float = 15.0
    price: float = 1.0


@dataclass(slots=True)
class SimWorker:
    id: str
    state: str
    since: float
    ready_at: float
    busy: int = 0
    served: bool = False  # has been ready once: its perf and load time are measured
    load_time: float | None = None
    after_drain: str = STOPPED


@dataclass(slots=True)
class Metrics:
    gpu_seconds: float = 0.0
    gpu_seconds_all: float = 0.0  # the warm-up included
    stopped_seconds: float = 0.0
    cold_starts: int = 0
    warm_starts: int = 0
    queue_delays: list[float] = field(default_factory=list)


class Cluster:
    """The workers, the queue and the clock; policies act on it between ``advance_to`` calls."""

    def __init__(
        self, trace: list[Request], spec: WorkerSpec, *, measure_from: float = 0.0
    ) -> None:
        self.spec = spec
        self.measure_from = measure_from
        self.trace = trace
        self.next_arrival = 0
        self.now = 0.0
        self.workers: dict[str, SimWorker] = {}
        self.queue: deque[Request] = deque()
        self.queued_work = 0.0
        self.completions: list[tuple[float, int, str]] = []
        self.done = 0
        self.metrics = Metrics()
        self.last_arrival_at: float | None = None
        self.tick_arrivals = 0
        self.tick_work = 0.0
        self._serial = 0
        self._seq = 0

    # --- what the policies see ---------------------------------------------------------------

    def in_state(self, *states: str) -> list[SimWorker]:
        return [w for w in self.workers.values() if w.state in states]

    def active(self) -> list[SimWorker]:
        """Workers serving or on their way to serve (what a replica count counts)."""
        return self.in_state(LOADING, STARTING, READY)

    def concurrency(self) -> int:
        """Requests in the system: in service plus queued (what Knative and Ray count)."""
        return sum(w.busy for w in self.workers.values()) + len(self.queue)

    def oldest_wait(self) -> float:
        return self.now - self.queue[0].arrival if self.queue else 0.0

    @property
    def finished(self) -> bool:
        return self.done == len(self.trace)

    # --- what the policies do ----------------------------------------------------------------

    def create(self, count: int = 1) -> None:
        for _ in range(count):
            self._serial += 1
            wid = f"w{self._serial}"
            self.workers[wid] = SimWorker(wid, LOADING, self.now, self.now + self.spec.cold_start)
            self.metrics.cold_starts += self.now >= self.measure_from

    def provision(self, count: int) -> None:
        """Workers ready before the replay starts (not counted as cold starts)."""
        for _ in range(count):
            self._serial += 1
            wid = f"w{self._serial}"
            worker = SimWorker(wid, READY, self.now, self.now, served=True)
            worker.load_time = self.spec.cold_start
            self.workers[wid] = worker

    def start(self, wid: str) -> None:
        worker = self.workers[wid]
        if worker.state != STOPPED:
            return
        self._account(worker)
        worker.state, worker.since = STARTING, self.now
        worker.ready_at = self.now + self.spec.warm_start
        self.metrics.warm_starts += self.now >= self.measure_from

    def stop(self, wid: str) -> None:
        self._leave(self.workers[wid], STOPPED)

    def destroy(self, wid: str) -> None:
        self._leave(self.workers[wid], GONE)

    def scale_to(self, replicas: int) -> None:
        """A replica-count policy's act: create, or remove (newest loading first, then the
        least busy ready ones, which drain)."""
        active = self.active()
        if replicas > len(active):
            self.create(replicas - len(active))
            return
        surplus = len(active) - replicas
        order = sorted(active, key=lambda w: (w.state != LOADING, w.busy, -w.since))
        for worker in order[:surplus]:
            self.destroy(worker.id)

    # --- the clock ---------------------------------------------------------------------------

    def advance_to(self, until: float) -> None:
        """Run arrivals, completions and workers becoming ready up to ``until``."""
        self.tick_arrivals, self.tick_work = 0, 0.0
        while True:
            t_arrival = (
                self.trace[self.next_arrival].arrival
                if self.next_arrival < len(self.trace)
                else float("inf")
            )
            t_done = self.completions[0][0] if self.completions else float("inf")
            t_ready = min(
                (w.ready_at for w in self.workers.values() if w.state in (LOADING, STARTING)),
                default=float("inf"),
            )
            t = min(t_arrival, t_done, t_ready)
            if t > until:
                break
            self.now = t
            if t == t_done:
                _, _, wid = heapq.heappop(self.completions)
                self._finish(self.workers[wid])
            elif t == t_ready:
                for worker in self.in_state(LOADING, STARTING):
                    if worker.ready_at <= t:
                        self._account(worker)
                        worker.load_time = worker.ready_at - worker.since
                        worker.state, worker.since, worker.served = READY, t, True
            else:
                request = self.trace[self.next_arrival]
                self.next_arrival += 1
                self.queue.append(request)
                self.queued_work += request.work
                self.tick_arrivals += 1
                self.tick_work += request.work
                self.last_arrival_at = t
            self._dispatch()
        self.now = until

    def close(self) -> Metrics:
        for worker in self.workers.values():
            self._account(worker)
        return self.metrics

    # --- inside ------------------------------------------------------------------------------

    def _account(self, worker: SimWorker) -> None:
        """Charge ``worker``'s time in its state so far, and restart its meter."""
        spent = max(0.0, self.now - max(worker.since, self.measure_from))
        if worker.state in ON_GPU:
            self.metrics.gpu_seconds += spent
            self.metrics.gpu_seconds_all += self.now - worker.since
        elif worker.state == STOPPED:
            self.metrics.stopped_seconds += spent
        worker.since = self.now

    def _leave(self, worker: SimWorker, then: str) -> None:
        if worker.state in (STOPPED, GONE):
            if then == GONE:
                self._account(worker)
                worker.state = GONE
            return
        self._account(worker)
        if worker.state in (LOADING, STARTING):
            # Not serving yet: it goes at once (a loading one has nothing on disk to keep).
            worker.state = then if worker.served else GONE
            return
        worker.after_drain = then
        worker.state = DRAINING
        if worker.busy == 0:
            self._drained(worker)

    def _drained(self, worker: SimWorker) -> None:
        self._account(worker)
        worker.state = worker.after_drain

    def _finish(self, worker: SimWorker) -> None:
        worker.busy -= 1
        self.done += 1
        if worker.state == DRAINING and worker.busy == 0:
            self._drained(worker)

    def _dispatch(self) -> None:
        if not self.queue:
            return
        free = [w for w in self.workers.values() if w.state == READY and w.busy < self.spec.slots]
        slot_rate = self.spec.perf / self.spec.slots
        while self.queue and free:
            # Pack: the busiest worker with a free slot, so that surplus workers empty out.
            worker = max(free, key=lambda w: (w.busy, w.id))
            request = self.queue.popleft()
            self.queued_work -= request.work
            if request.arrival >= self.measure_from:
                self.metrics.queue_delays.append(self.now - request.arrival)
            worker.busy += 1
            self._seq += 1
            heapq.heappush(
                self.completions, (self.now + request.work / slot_rate, self._seq, worker.id)
            )
            if worker.busy >= self.spec.slots:
                free.remove(worker)
