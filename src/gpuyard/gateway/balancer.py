"""Replica choice: the fewest requests in flight, ties broken at random. What goes through it is
also measured (``LoadMeter``), for the autoscaling of clusters."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from typing import TypeVar

from gpuyard.gateway.load_meter import LoadMeter

T = TypeVar("T")


class LeastOutstanding:
    def __init__(self, rng: random.Random | None = None, meter: LoadMeter | None = None) -> None:
        self._inflight: defaultdict[str, int] = defaultdict(int)
        self._rng = rng or random.Random()
        self._meter = meter

    def order(self, candidates: Sequence[T], key: str = "replica_id") -> list[T]:
        """Candidates best first: fewest in flight; ties shuffled so load spreads."""
        if len(candidates) < 2:
            return list(candidates)
        shuffled = list(candidates)
        self._rng.shuffle(shuffled)
        return sorted(shuffled, key=lambda c: self._inflight[str(getattr(c, key))])

    def acquire(self, replica_id: str, cluster_id: str = "") -> None:
        self._inflight[replica_id] += 1
        if self._meter is not None and cluster_id:
            self._meter.began(cluster_id, replica_id)

    def release(self, replica_id: str, cluster_id: str = "") -> None:
        if self._meter is not None and cluster_id:
            self._meter.ended(cluster_id, replica_id)
        self._inflight[replica_id] -= 1
        if self._inflight[replica_id] <= 0:
            del self._inflight[replica_id]

    def inflight(self, replica_id: str) -> int:
        return self._inflight.get(replica_id, 0)

    def busy(self) -> int:
        """Requests in flight on all replicas together."""
        return sum(self._inflight.values())
