"""The replica count of an autoscaled cluster, from the serverless policy (pure, no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gpuyard.core.autoscaling import LoadSample
from gpuyard.core.autoscaling.replicas import (
    ClusterDemand,
    ReplicaAutoscaling,
    ReplicaLoad,
    autoscaling_errors,
    plan_replicas,
)

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def load(concurrency: float, seconds: int = 60) -> ClusterDemand:
    """A steady concurrency over the last ``seconds``, sampled every 5 s."""
    samples = [
        LoadSample(at=NOW - timedelta(seconds=s), load=concurrency) for s in range(seconds, -1, -5)
    ]
    return ClusterDemand(samples=samples, last_request_at=NOW)


def ready(n: int, busy: int = 0) -> list[ReplicaLoad]:
    return [ReplicaLoad(id=f"r{i}", ready=True, in_flight=1 if i < busy else 0) for i in range(n)]


def test_load_sets_the_count_within_the_bounds() -> None:
    a = ReplicaAutoscaling(min_replicas=1, max_replicas=4, target_concurrency=2)
    assert plan_replicas(a, load(5), ready(1), NOW).replicas == 3  # ceil(5 / 2)
    assert plan_replicas(a, load(50), ready(1), NOW).replicas == 4  # max_replicas
    assert plan_replicas(a, load(0), ready(3), NOW).replicas == 1  # min_replicas


def test_a_replica_with_requests_in_flight_is_never_retired() -> None:
    a = ReplicaAutoscaling(min_replicas=1, max_replicas=4, target_concurrency=2)
    planned = plan_replicas(a, load(0), ready(3, busy=3), NOW)
    assert planned.replicas == 3 and planned.retire == ()
    planned = plan_replicas(a, load(0), ready(3, busy=1), NOW)
    assert planned.replicas == 1 and set(planned.retire) == {"r1", "r2"}


def test_scale_to_zero_after_the_inactivity_timeout_and_back_on_demand() -> None:
    a = ReplicaAutoscaling(min_replicas=0, max_replicas=2, inactivity_timeout=60)
    recent = ClusterDemand(last_request_at=NOW - timedelta(seconds=30))
    assert plan_replicas(a, recent, ready(1), NOW).replicas == 1
    idle = ClusterDemand(last_request_at=NOW - timedelta(seconds=61))
    assert plan_replicas(a, idle, ready(1), NOW).replicas == 0
    waiting = ClusterDemand(waiting=1, last_request_at=NOW)
    assert plan_replicas(a, waiting, [], NOW).replicas == 1
    never = ReplicaAutoscaling(min_replicas=0, max_replicas=2, inactivity_timeout=None)
    assert plan_replicas(never, idle, ready(1), NOW).replicas == 1


def test_errors_name_the_field() -> None:
    assert autoscaling_errors(ReplicaAutoscaling(min_replicas=2, max_replicas=1)) == {
        "max_replicas": "max_replicas must be >= min_replicas"
    }
    assert set(autoscaling_errors(ReplicaAutoscaling(min_replicas=-1, max_replicas=65))) == {
        "min_replicas",
        "max_replicas",
    }
    assert "target_concurrency" in autoscaling_errors(
        ReplicaAutoscaling(max_replicas=1, target_concurrency=float("nan"))
    )
