"""Replay request traces through gpuyard's serverless autoscaling policy and three baselines.

Every policy drives the same simulated workers (``autoscaler_cluster.py``) through the same trace
on a simulated clock (1 s steps, each policy at its own cadence); the table gives, per trace and
policy, GPU-seconds, worker-hours kept stopped (storage only), cold starts (new workers) and warm
starts (from stopped), the queue delay p50/p99/max and the requests whose queue delay is over the
SLO. gpuyard's row is the real ``gpuyard.core.autoscaling.plan``; the baselines are
``autoscaler_baselines.py``. The knobs set for gpuyard and why: bench/README.md.

Traces: the public Azure conversation trace (``--trace`` for another CSV of arrival, input tokens,
output tokens), its first half (the one the knobs were tuned on), its second half, and a bursty
synthetic trace drawn with ``--seed`` from the same token counts (neither seen while tuning).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from autoscaler_baselines import KnativeKPA, RayServe, SkyServe
from autoscaler_cluster import Cluster, Metrics, WorkerSpec
from autoscaler_gpuyard import Gpuyard
from autoscaler_oracle import Oracle
from autoscaler_trace import Request, bursty, read_trace, time_split
from report import markdown_table, percentile

from gpuyard.core.autoscaling import EndpointKnobs, PolicyTuning


def default_trace() -> Path:
    """The public trace in the ``shared/data`` folder beside the checkout (or one level up)."""
    root = Path(__file__).resolve().parents[1]
    candidates = [up / "shared" / "data" / "azure-llm-2023-conv.csv" for up in root.parents[:2]]
    return next((c for c in candidates if c.exists()), candidates[0])


KNOBS = EndpointKnobs(
    min_load=0.0,
    min_cold_load=0.0,
    target_util=0.8,
    cold_mult=3.0,
    cold_workers=2,
    max_workers=40,
    max_queue_time=30.0,
    target_queue_time=2.0,
    inactivity_timeout=60.0,
)
"""gpuyard's knobs for the simulation (why each: bench/README.md)."""


def tuning(spec: WorkerSpec) -> PolicyTuning:
    """gpuyard's own settings for the simulation: the defaults, and the worker's benchmark perf
    before one is measured (the baselines are given it too)."""
    return PolicyTuning(default_perf=spec.perf)


WARMUP = 300.0
"""Seconds of each trace replayed before measuring, so that no policy is judged on how it starts
(every policy also starts from the same ready workers, ``initial_workers``)."""

INITIAL_UTIL = 0.7


def initial_workers(trace: list[Request], spec: WorkerSpec) -> int:
    """Ready workers every policy starts with: the first minute's load at 70% (no stopped ones)."""
    first_minute = sum(r.work for r in trace if r.arrival < 60.0) / 60.0
    return max(1, math.ceil(first_minute / (spec.perf * INITIAL_UTIL)))


class Policy(Protocol):
    name: str

    def step(self, cluster: Cluster, now: float) -> None: ...


def policies(trace: list[Request], spec: WorkerSpec, baseline_util: float) -> list[Policy]:
    mean_work = sum(r.work for r in trace) / len(trace)
    replica_qps = spec.perf / mean_work  # requests/s one replica serves at a full batch
    return [
        Gpuyard(KNOBS, tuning=tuning(spec)),
        SkyServe(target_qps_per_replica=replica_qps * baseline_util),
        KnativeKPA(container_concurrency=spec.slots),
        RayServe(target_ongoing_requests=2.0),
    ]


def replay(
    trace: list[Request], spec: WorkerSpec, policy: Policy, *, warmup: float = 0.0
) -> tuple[Metrics, float]:
    """Run ``policy`` over ``trace`` until every request is served; the metrics (from ``warmup``
    on) and the end."""
    cluster = Cluster(trace, spec, measure_from=warmup)
    cluster.provision(initial_workers(trace, spec))
    step = policy.step
    last = trace[-1].arrival
    now = 0.0
    step(cluster, now)
    while now < last or not cluster.finished:
        now += 1.0
        cluster.advance_to(now)
        step(cluster, now)
        if now > last + 3600:
            raise SystemExit(f"{policy.name}: requests still queued an hour on")
    return cluster.close(), now


def rows_for(
    label: str,
    trace: list[Request],
    spec: WorkerSpec,
    slo: float,
    baseline_util: float,
    oracle_utils: Sequence[float] = (),
) -> list[list[object]]:
    rows: list[list[object]] = []
    references: list[Policy] = [
        Oracle([r.arrival for r in trace], [r.work for r in trace], util=u) for u in oracle_utils
    ]
    for policy in [*policies(trace, spec, baseline_util), *references]:
        metrics, _ = replay(trace, spec, policy, warmup=WARMUP)
        delays = metrics.queue_delays
        over = sum(1 for d in delays if d > slo)
        rows.append(
            [
                label,
                policy.name,
                f"{metrics.gpu_seconds:,.0f}",
                f"{metrics.gpu_seconds_all:,.0f}",
                f"{metrics.stopped_seconds / 3600:.1f}",
                metrics.cold_starts,
                metrics.warm_starts,
                f"{percentile(delays, 50):.2f}",
                f"{percentile(delays, 99):.2f}",
                f"{max(delays):.1f}",
                f"{over} ({100 * over / len(delays):.2f}%)",
            ]
        )
    # The best baseline: the cheapest whose p99 queue delay is within the SLO (else the cheapest).
    ours, baselines = rows[0], rows[1:4]
    within = [r for r in baselines if float(str(r[8])) <= slo] or baselines
    best = min(within, key=lambda r: float(str(r[2]).replace(",", "")))
    saved = 1 - float(str(ours[2]).replace(",", "")) / float(str(best[2]).replace(",", ""))
    p99_ok = float(str(ours[8])) <= float(str(best[8]))
    change = f"{saved:.0%} fewer" if saved >= 0 else f"{-saved:.0%} more"
    ours[1] = f"gpuyard ({change} GPU-s than {best[1]}, p99 {'<=' if p99_ok else '>'})"
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trace", type=Path, default=None, help="CSV: arrival, in, out")
    parser.add_argument("--seed", type=int, default=7, help="seed of the bursty trace")
    parser.add_argument("--slo", type=float, default=5.0, help="queue delay SLO, seconds")
    parser.add_argument("--perf", type=float, default=1000.0, help="worker tokens/s, full batch")
    parser.add_argument("--slots", type=int, default=8, help="requests a worker serves at once")
    parser.add_argument("--cold-start", type=float, default=120.0, help="seconds, new worker")
    parser.add_argument("--warm-start", type=float, default=15.0, help="seconds, from stopped")
    parser.add_argument(
        "--baseline-util", type=float, default=0.7, help="SkyServe's QPS target, of capacity"
    )
    parser.add_argument(
        "--oracle",
        type=float,
        action="append",
        default=[],
        metavar="UTIL",
        help="add a clairvoyant reference at this utilisation (autoscaler_oracle.py); repeatable",
    )
    parser.add_argument("--only", choices=("full", "tuned", "held-out", "bursty"), nargs="*")
    args = parser.parse_args(argv)
    spec = WorkerSpec(
        perf=args.perf, slots=args.slots, cold_start=args.cold_start, warm_start=args.warm_start
    )
    args.trace = args.trace or default_trace()
    if not args.trace.exists():
        parser.error(f"no trace at {args.trace}: give one with --trace FILE")
    trace = read_trace(args.trace)
    half = trace[-1].arrival / 2
    traces = {
        "full": (f"{args.trace.stem}", trace),
        "tuned": ("first half (tuned on)", time_split(trace, 0.0, half)),
        "held-out": ("second half", time_split(trace, half, float("inf"))),
        "bursty": (f"bursty, seed {args.seed}", bursty(trace, seed=args.seed)),
    }
    chosen = args.only or list(traces)
    started = time.perf_counter()
    rows: list[list[object]] = []
    for key in chosen:
        label, requests = traces[key]
        print(f"replaying {label}: {len(requests)} requests", file=sys.stderr)
        rows += rows_for(label, requests, spec, args.slo, args.baseline_util, args.oracle)
    headers = [
        "trace",
        "policy",
        "GPU-s",
        "GPU-s, warm-up too",
        "stopped h",
        "cold starts",
        "warm starts",
        "queue p50 s",
        "queue p99 s",
        "queue max s",
        f"over {args.slo:g} s SLO",
    ]
    print(
        f"Every policy starts with the ready workers the first minute needs at "
        f"{INITIAL_UTIL:.0%} utilisation and is measured after a {WARMUP:g} s warm-up. "
        f"Workers: {spec.perf:g} tokens/s at {spec.slots} requests, cold start "
        f"{spec.cold_start:g} s, from stopped {spec.warm_start:g} s; request work = input + "
        f"output tokens.\n"
    )
    print(markdown_table(headers, rows))
    print(f"\n({time.perf_counter() - started:.1f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
