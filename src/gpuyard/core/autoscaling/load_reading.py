"""Reading the load history: rolling means and their peaks."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from gpuyard.core.autoscaling.model import LoadSample


def rolling_peak(
    samples: Sequence[LoadSample], now: datetime, *, window: float, span: float
) -> float:
    """The highest ``window``-second rolling mean of the load over the last ``span`` seconds."""
    oldest = now.timestamp() - span - window
    points = [(s.at.timestamp(), s.load) for s in samples if s.at.timestamp() > oldest]
    if not points:
        return 0.0
    peak = 0.0
    total = 0.0
    start = 0
    for end, (at, load) in enumerate(points):
        total += load
        while points[start][0] <= at - window:
            total -= points[start][1]
            start += 1
        if at > now.timestamp() - span - 1e-9:
            peak = max(peak, total / (end - start + 1))
    return max(peak, 0.0)
