"""Which host a workergroup's next worker goes to: best perf per dollar, once measured.

A pure function over the hosts that have room (in the scheduler's order: spread, then binpack)
and the group's live workers with the perf they measured (their ``max_perf``, 0 until
measured), per host and GPU type:

1. **Measure first**: while the group's workers are on fewer than ``test_workers`` hosts, a host
   with none of them comes first (the scheduler's order among them), so the group learns what
   each kind of machine gives.
2. **Then perf per dollar**: each host's expected perf is what the group measured there, else
   the mean it measured on that GPU type, else its mean over all; over the host's price for the
   worker's GPUs per hour. The best ratio wins; ties, and hosts with nothing to go by, keep the
   scheduler's order.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import fmean


@dataclass(frozen=True, slots=True)
class HostOption:
    host_id: str
    gpu_key: str
    cents_per_hour: float  # the worker's GPUs on this host, per hour


@dataclass(frozen=True, slots=True)
class MeasuredWorker:
    """A live worker of the group: where it runs, and its measured perf (0: not yet)."""

    host_id: str
    gpu_key: str
    perf: float


def rank_hosts(
    options: Sequence[HostOption], measured: Sequence[MeasuredWorker], test_workers: int
) -> list[int]:
    """Indexes into ``options``, best first."""
    tried = {m.host_id for m in measured}
    known = [m for m in measured if m.perf > 0]
    by_host: dict[str, list[float]] = defaultdict(list)
    by_type: dict[str, list[float]] = defaultdict(list)
    for m in known:
        by_host[m.host_id].append(m.perf)
        by_type[m.gpu_key].append(m.perf)
    overall = fmean(m.perf for m in known) if known else None

    def expected(o: HostOption) -> float | None:
        if by_host.get(o.host_id):
            return fmean(by_host[o.host_id])
        if by_type.get(o.gpu_key):
            return fmean(by_type[o.gpu_key])
        return overall

    def key(i: int) -> tuple[int, float, int]:
        o = options[i]
        exploring = len(tried) < test_workers and o.host_id not in tried
        perf = expected(o)
        ratio = perf / max(o.cents_per_hour, 1e-9) if perf is not None else 0.0
        return (0 if exploring else 1, -ratio, i)

    return sorted(range(len(options)), key=key)
