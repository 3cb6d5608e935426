"""Request traces for the autoscaler simulator: read from CSV, split in time, or made bursty.

A trace is a list of ``Request(arrival, input_tokens, output_tokens)``, arrivals in seconds from
the first request, sorted. The CSV has a header and three columns: the arrival (an ISO timestamp
such as the Azure trace's ``TIMESTAMP``, or seconds), input tokens, output tokens.
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Request:
    arrival: float
    input_tokens: int
    output_tokens: int

    @property
    def work(self) -> float:
        """The request's work in perf units (tokens), as Vast's LLM workers count it."""
        return float(self.input_tokens + self.output_tokens)


def _seconds(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        # Seven fractional digits in the Azure trace: keep microseconds.
        head, _, frac = text.strip().partition(".")
        return datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}").timestamp()


def read_trace(path: Path) -> list[Request]:
    with path.open(newline="") as f:
        rows = csv.reader(f)
        next(rows, None)
        raw = [(_seconds(r[0]), int(r[1]), int(r[2])) for r in rows if r]
    raw.sort()
    if not raw:
        raise SystemExit(f"{path}: no requests")
    t0 = raw[0][0]
    return [Request(t - t0, i, o) for t, i, o in raw]


def time_split(trace: list[Request], start: float, end: float) -> list[Request]:
    """The requests that arrive in [start, end), shifted to start at 0."""
    return [
        Request(r.arrival - start, r.input_tokens, r.output_tokens)
        for r in trace
        if start <= r.arrival < end
    ]


def bursty(trace: list[Request], *, seed: int, duration: float = 3600.0) -> list[Request]:
    """A synthetic bursty trace, drawn with ``seed``, with the token counts of ``trace``.

    Alternating phases: quiet (a base rate of 1 request/s), busy (3 to 8 requests/s) and idle (no
    requests at all, so scale to zero matters), each 2 to 8 minutes long, with Poisson arrivals;
    each request's tokens are drawn from ``trace``. Nothing of it was seen while tuning.
    """
    rng = random.Random(seed)
    tokens = [(r.input_tokens, r.output_tokens) for r in trace]
    out: list[Request] = []
    t = 0.0
    while t < duration:
        phase = rng.choice(("quiet", "busy", "busy", "idle"))
        length = rng.uniform(120.0, 480.0)
        rate = {"quiet": 1.0, "busy": rng.uniform(3.0, 8.0), "idle": 0.0}[phase]
        end = min(t + length, duration)
        if rate > 0:
            at = t + rng.expovariate(rate)
            while at < end:
                i, o = rng.choice(tokens)
                out.append(Request(at, i, o))
                at += rng.expovariate(rate)
        t = end
    return out
