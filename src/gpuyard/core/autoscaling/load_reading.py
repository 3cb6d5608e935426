"""Reading the load history: rolling means and their peaks."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from gpuyard.core.autoscaling.model import LoadSample


def rolling_peak(
    samples: Sequence[LoadSample], now: datetime, *, window: float, span: float
) -> float:
    """The highest ``window``-second rolling mean of the load over the last ``span`` seconds
    (``span`` 0: the rolling mean now). Samples after ``now`` are ignored."""
    # Seconds before now, so that no precision is lost to large epoch timestamps.
    points = [((now - s.at).total_seconds(), s.load) for s in samples]
    points = [(ago, load) for ago, load in points if 0 <= ago < span + window]
    if not points:
        return 0.0
    points.sort(key=lambda p: -p[0])  # oldest first
    peak = 0.0
    total = 0.0
    start = 0
    for end, (ago, load) in enumerate(points):
        total += load
        while points[start][0] >= ago + window:
            total -= points[start][1]
            start += 1
        if ago <= span:
            peak = max(peak, total / (end - start + 1))
    return max(peak, 0.0)
