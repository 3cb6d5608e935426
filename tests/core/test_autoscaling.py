"""The serverless autoscaling policy, step by step on a hand-moved clock (no sleeping)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from gpuyard.core.autoscaling import (
    Demand,
    EndpointKnobs,
    LoadSample,
    Plan,
    PolicyTuning,
    WorkerState,
    WorkerView,
    knob_errors,
    plan,
    rolling_peak,
)
from gpuyard.core.clock import ManualClock

PERF = 100.0
KNOBS = EndpointKnobs(
    min_load=0.0,
    target_util=1.0,
    cold_mult=1.0,
    cold_workers=0,
    max_workers=10,
    target_queue_time=5.0,
    inactivity_timeout=60.0,
)


def ready(wid: str, *, busy: int = 0, price: float = 1.0, perf: float = PERF) -> WorkerView:
    return WorkerView(wid, WorkerState.IDLE, perf=perf, reqs_working=busy, price=price)


def stopped(wid: str, *, since: datetime | None = None, price: float = 1.0) -> WorkerView:
    return WorkerView(wid, WorkerState.STOPPED, perf=PERF, price=price, state_since=since)


def steady(clock: ManualClock, load: float, seconds: int = 120) -> list[LoadSample]:
    now = clock.now()
    return [LoadSample(now - timedelta(seconds=s), load) for s in range(seconds, -1, -2)]


class Fleet:
    """Applies plans the way a controller would: new workers load, then report their perf."""

    def __init__(self, clock: ManualClock, workers: list[WorkerView]) -> None:
        self.clock = clock
        self.workers = {w.id: w for w in workers}
        self.serial = 0

    def apply(self, decision: Plan) -> None:
        for wid in decision.stop:
            self.workers[wid] = replace(
                self.workers[wid], state=WorkerState.STOPPED, state_since=self.clock.now()
            )
        for wid in decision.destroy:
            del self.workers[wid]
        for wid in decision.start:
            self.workers[wid] = replace(self.workers[wid], state=WorkerState.STARTING)
        for _ in range(decision.create):
            self.serial += 1
            wid = f"new{self.serial}"
            self.workers[wid] = WorkerView(wid, WorkerState.CREATING, state_since=self.clock.now())

    def all_ready(self) -> None:
        for wid, worker in self.workers.items():
            if worker.state in (WorkerState.CREATING, WorkerState.STARTING):
                self.workers[wid] = replace(worker, state=WorkerState.IDLE, perf=PERF)

    def count(self, state: WorkerState) -> int:
        return sum(1 for w in self.workers.values() if w.state == state)


def test_scale_from_zero_on_a_waiting_request() -> None:
    clock = ManualClock()
    fleet = Fleet(clock, [])
    assert plan(KNOBS, Demand(), [], clock.now()).is_empty

    demand = Demand(waiting_requests=1, waiting_load=50, last_request_at=clock.now())
    decision = plan(KNOBS, demand, [], clock.now())
    assert decision.create == 1
    fleet.apply(decision)
    clock.advance(2)
    # The worker is loading: no second one for the same request.
    assert plan(KNOBS, demand, list(fleet.workers.values()), clock.now()).create == 0


def test_scale_from_zero_starts_a_stopped_worker_rather_than_create() -> None:
    clock = ManualClock()
    workers = [stopped("cheap", price=1.0), stopped("dear", price=3.0)]
    demand = Demand(waiting_requests=2, last_request_at=clock.now())
    decision = plan(KNOBS, demand, workers, clock.now())
    assert decision.start == ("cheap",)  # best perf per dollar first
    assert decision.create == 0


def test_load_sizes_active_capacity_by_target_util() -> None:
    clock = ManualClock()
    knobs = replace(KNOBS, target_util=0.8)
    demand = Demand(load_samples=steady(clock, 400.0), last_request_at=clock.now())
    decision = plan(knobs, demand, [ready("a")], clock.now())
    assert decision.active_target == pytest.approx(500.0)
    assert decision.create == 4


def test_never_stops_or_destroys_a_worker_with_requests_in_flight() -> None:
    clock = ManualClock()
    workers = [ready("busy", busy=3), ready("idle")]
    # No load at all, inactive for long: everything would go, but not the busy one.
    clock.advance(3600)
    demand = Demand(last_request_at=clock.now() - timedelta(seconds=600))
    decision = plan(KNOBS, demand, workers, clock.now())
    assert decision.stop == ("idle",)
    assert "busy" not in decision.destroy

    errored = [replace(ready("broken", busy=2), state=WorkerState.ERROR)]
    decision = plan(KNOBS, demand, errored, clock.now())
    assert decision.destroy == ()
    assert decision.stop == ()


def test_max_workers_bounds_creation_and_cold_pool() -> None:
    clock = ManualClock()
    knobs = replace(KNOBS, max_workers=3, cold_mult=3.0)
    demand = Demand(load_samples=steady(clock, 1000.0), last_request_at=clock.now())
    fleet = Fleet(clock, [ready("a")])
    for _ in range(5):
        fleet.apply(plan(knobs, demand, list(fleet.workers.values()), clock.now()))
        fleet.all_ready()
        clock.advance(2)
        demand = replace(demand, load_samples=steady(clock, 1000.0))
    assert len(fleet.workers) == 3


def test_queue_time_over_target_scales_up_at_once() -> None:
    clock = ManualClock()
    workers = [ready("a", busy=8), ready("b", busy=8)]
    # The load history says two workers are plenty...
    samples = steady(clock, 100.0)
    calm = Demand(load_samples=samples, queue_time=1.0, last_request_at=clock.now())
    assert plan(KNOBS, calm, workers, clock.now()).create == 0
    # ...but the queue is over its target now: up in this very step, not after a delay.
    queued = replace(calm, queue_time=12.0, waiting_requests=30, waiting_load=6000.0)
    decision = plan(KNOBS, queued, workers, clock.now())
    assert decision.create >= 1
    assert any("queue time" in reason for reason in decision.reasons)


def test_scale_down_waits_for_the_hold_then_stops_to_cold() -> None:
    clock = ManualClock()
    fleet = Fleet(clock, [ready(f"w{i}") for i in range(4)])
    busy = [LoadSample(clock.now() - timedelta(seconds=s), 400.0) for s in range(120, -1, -2)]
    samples = list(busy)
    tuning = PolicyTuning(smoothing=10.0, scale_down_hold=60.0)
    steps = 0
    while fleet.count(WorkerState.IDLE) > 1:
        clock.advance(2)
        steps += 1
        samples.append(LoadSample(clock.now(), 50.0))
        demand = Demand(load_samples=samples, last_request_at=clock.now())
        decision = plan(KNOBS, demand, list(fleet.workers.values()), clock.now(), tuning=tuning)
        if steps * 2 < 60:
            assert decision.stop == ()  # the smoothed load is still high within the hold
        fleet.apply(decision)
        assert steps < 100
    assert steps * 2 <= 72  # the hold, plus the 10 s smoothing
    assert fleet.count(WorkerState.STOPPED) == 3  # stopped to cold, not destroyed


def test_inactivity_timeout_gates_scale_to_zero() -> None:
    clock = ManualClock()
    last_request = clock.now()
    fleet = Fleet(clock, [ready("a")])
    for _ in range(29):  # 58 s without a request: the last worker stays
        clock.advance(2)
        demand = Demand(last_request_at=last_request)
        fleet.apply(plan(KNOBS, demand, list(fleet.workers.values()), clock.now()))
        assert fleet.count(WorkerState.IDLE) == 1
    clock.advance(2)  # 60 s: down to zero active workers, kept cold
    fleet.apply(
        plan(KNOBS, Demand(last_request_at=last_request), list(fleet.workers.values()), clock.now())
    )
    assert fleet.count(WorkerState.IDLE) == 0
    assert fleet.count(WorkerState.STOPPED) == 1

    # Without an inactivity_timeout the last active worker never goes.
    never = replace(KNOBS, inactivity_timeout=None)
    clock.advance(86_400)
    assert plan(never, Demand(last_request_at=last_request), [ready("a")], clock.now()).stop == ()


def test_min_load_keeps_a_worker_active_without_traffic() -> None:
    clock = ManualClock()
    knobs = replace(KNOBS, min_load=1.0)
    assert plan(knobs, Demand(), [ready("a")], clock.now()).is_empty
    assert plan(knobs, Demand(), [stopped("a")], clock.now()).start == ("a",)


def test_cold_workers_are_kept_loaded_and_surplus_destroyed_late() -> None:
    clock = ManualClock()
    knobs = replace(KNOBS, cold_workers=2)
    fleet = Fleet(clock, [])
    fleet.apply(plan(knobs, Demand(), [], clock.now()))
    assert fleet.count(WorkerState.CREATING) == 2  # kept loaded even with no traffic
    fleet.all_ready()
    clock.advance(2)
    # Ready with nothing to do: stopped (model kept), not destroyed.
    fleet.apply(plan(knobs, Demand(), list(fleet.workers.values()), clock.now()))
    assert fleet.count(WorkerState.STOPPED) == 2
    clock.advance(7200)
    assert plan(knobs, Demand(), list(fleet.workers.values()), clock.now()).is_empty

    # A third stopped worker beyond cold_workers: one goes, but only after destroy_after.
    since = clock.now()
    workers = [stopped(wid, since=since) for wid in ("x", "y", "z")]
    assert plan(knobs, Demand(), workers, clock.now()).destroy == ()
    clock.advance(601)
    assert len(plan(knobs, Demand(), workers, clock.now()).destroy) == 1


def test_down_worst_perf_per_dollar_first() -> None:
    clock = ManualClock()
    workers = [ready("cheap", price=1.0), ready("dear", price=2.0)]
    demand = Demand(load_samples=steady(clock, 80.0), last_request_at=clock.now())
    assert plan(KNOBS, demand, workers, clock.now()).stop == ("dear",)


def test_a_worker_that_never_becomes_ready_is_replaced() -> None:
    clock = ManualClock()
    stuck = WorkerView("stuck", WorkerState.LOADING, state_since=clock.now())
    demand = Demand(waiting_requests=1, last_request_at=clock.now())
    assert plan(KNOBS, demand, [stuck], clock.now()).is_empty
    clock.advance(1801)
    decision = plan(KNOBS, replace(demand, last_request_at=clock.now()), [stuck], clock.now())
    assert decision.destroy == ("stuck",)
    assert decision.create == 1


def test_rolling_peak_reads_the_highest_smoothed_load() -> None:
    clock = ManualClock()
    now = clock.now()
    samples = [LoadSample(now - timedelta(seconds=s), 100.0 if s < 10 else 0.0) for s in range(60)]
    assert rolling_peak(samples, now, window=10, span=30) == pytest.approx(100.0)
    assert rolling_peak(samples, now + timedelta(seconds=100), window=10, span=30) == 0.0
    # span 0: the rolling mean now (half the last 20 s were busy).
    assert rolling_peak(samples, now, window=20, span=0) == pytest.approx(50.0)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"target_util": 0.0}, "target_util"),
        ({"target_util": 1.5}, "target_util"),
        ({"min_load": -1.0}, "min_load"),
        ({"cold_workers": 6, "max_workers": 5}, "max_workers"),
        ({"inactivity_timeout": -5.0}, "inactivity_timeout"),
    ],
)
def test_knob_errors_name_the_field(change: dict[str, float], field: str) -> None:
    assert field in knob_errors(replace(EndpointKnobs(), **change))


def test_default_knobs_are_valid() -> None:
    assert knob_errors(EndpointKnobs()) == {}


def test_a_burst_scales_up_before_the_smoothed_load_moves() -> None:
    clock = ManualClock()
    now = clock.now()
    # A quiet minute, then the last 10 s at 500/s: the 60 s mean is still under 100/s.
    samples = [
        LoadSample(now - timedelta(seconds=s), 500.0 if s < 10 else 0.0) for s in range(120, -1, -2)
    ]
    demand = Demand(load_samples=samples, last_request_at=now)
    slow = PolicyTuning(burst_window=0.0)
    assert plan(KNOBS, demand, [ready("a")], now, tuning=slow).create == 0
    decision = plan(KNOBS, demand, [ready("a")], now)
    assert decision.predicted_load == pytest.approx(500.0)
    assert decision.create == 4


def test_from_zero_a_long_queue_asks_for_its_demand_not_one_worker() -> None:
    clock = ManualClock()
    workers = [WorkerView("w", WorkerState.STARTING, perf=PERF, state_since=clock.now())]
    # 8 s of requests at 300/s wait, nothing is ready: the demand is about 300/s.
    demand = Demand(
        queue_time=8.0, waiting_requests=24, waiting_load=2400.0, last_request_at=clock.now()
    )
    decision = plan(KNOBS, demand, workers, clock.now())
    assert decision.create >= 3
