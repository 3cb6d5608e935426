"""The scale-up host choice: measure on ``test_workers`` hosts first, then best perf per dollar."""

from __future__ import annotations

from gpuyard.core.autoscaling.host_choice import HostOption, MeasuredWorker, rank_hosts

CHEAP = HostOption("h-cheap", "rtx-3090", 20.0)
DEAR = HostOption("h-dear", "rtx-4090", 100.0)
OTHER_DEAR = HostOption("h-dear-2", "rtx-4090", 100.0)


def test_with_nothing_measured_the_schedulers_order_stands() -> None:
    assert rank_hosts([DEAR, CHEAP], [], test_workers=0) == [0, 1]
    assert rank_hosts([DEAR, CHEAP], [], test_workers=3) == [0, 1]


def test_unmeasured_hosts_come_first_until_test_workers_hosts_are_measured() -> None:
    measured = [MeasuredWorker("h-cheap", "rtx-3090", 10.0)]
    # One host measured of two wanted: the unmeasured one first, however it compares.
    assert rank_hosts([CHEAP, DEAR], measured, test_workers=2) == [1, 0]
    # Enough measured: perf per dollar (10/20 beats an expected 10/100).
    assert rank_hosts([CHEAP, DEAR], measured, test_workers=1) == [0, 1]


def test_best_perf_per_dollar_once_measured() -> None:
    measured = [
        MeasuredWorker("h-cheap", "rtx-3090", 10.0),  # 0.5 perf per cent-hour
        MeasuredWorker("h-dear", "rtx-4090", 100.0),  # 1.0
    ]
    assert rank_hosts([CHEAP, DEAR], measured, test_workers=2) == [1, 0]
    # A host not measured itself is expected to do what its GPU type did elsewhere.
    assert rank_hosts([CHEAP, OTHER_DEAR], measured, test_workers=2) == [1, 0]
    slow = [MeasuredWorker("h-cheap", "rtx-3090", 60.0), measured[1]]  # 3.0 beats 1.0
    assert rank_hosts([DEAR, CHEAP], slow, test_workers=2) == [1, 0]


def test_a_worker_not_measured_yet_counts_as_tried_but_not_as_perf() -> None:
    loading = [MeasuredWorker("h-cheap", "rtx-3090", 0.0)]
    assert rank_hosts([CHEAP, DEAR], loading, test_workers=2) == [1, 0]  # try another host
    assert rank_hosts([CHEAP, DEAR], loading, test_workers=1) == [0, 1]  # nothing to go by
