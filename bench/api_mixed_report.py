"""The mixed API benchmark's windows and its tables (api_mixed.py): per (database, workers) the
highest rate served with p99 under the target, and every window's latencies and CPU."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from report import Latency, machine_line, markdown_table, ms

if TYPE_CHECKING:
    from api_mixed import Outcome


@dataclass(frozen=True, slots=True)
class Window:
    rate: float
    seconds: float
    sent: int
    errors: dict[str, int]
    all: Latency  # from due to answered, ms
    by_kind: dict[str, Latency]
    send_lag_p99: float  # how late the load generator sent (ms): its own stalls and waits
    server_cores: float  # the parent and every worker
    postgres_cores: float | None
    loadgen_cores: float
    machine_busy: float  # share of all cores

    @classmethod
    def of(
        cls, *, rate: float, seconds: float, kinds: list[str], rows: list[list[Any]], **cpu: Any
    ) -> Window:
        latency: dict[str, list[float]] = {kind: [] for kind in kinds}
        lags: list[float] = []
        errors: dict[str, int] = {}
        for row in rows:
            kind, due, sent, answered = kinds[int(row[0])], row[1], row[2], row[3]
            if len(row) > 4:
                errors[str(row[4])] = errors.get(str(row[4]), 0) + 1
            latency[kind].append(answered - due)
            lags.append(sent - due)
        everything = [v for values in latency.values() for v in values]
        return cls(
            rate=rate,
            seconds=seconds,
            sent=len(rows),
            errors=errors,
            all=Latency.of(everything),
            by_kind={kind: Latency.of(values) for kind, values in latency.items()},
            send_lag_p99=Latency.of(lags).p99,
            **cpu,
        )

    @property
    def others_cores(self) -> float:
        """What every other process took meanwhile (neighbours on a shared machine)."""
        ours = self.server_cores + (self.postgres_cores or 0.0) + self.loadgen_cores
        return max(0.0, self.machine_busy * (os.cpu_count() or 1) - ours)

    @property
    def achieved(self) -> float:
        ok = self.sent - sum(self.errors.values())
        return ok / self.seconds if self.seconds else 0.0


def best(windows: Sequence[Window], target_ms: float) -> Window | None:
    """The highest-rate window with p99 under the target and no errors."""
    good = [w for w in windows if w.all.p99 < target_ms and not w.errors]
    return max(good, key=lambda w: w.rate, default=None)


def _rate(value: float) -> str:
    return f"{value:.0f}"


def summary_rows(outcomes: Sequence[Outcome], target_ms: float) -> list[list[object]]:
    rows: list[list[object]] = []
    for o in outcomes:
        if o.skipped:
            rows.append([o.kind, o.workers, "skipped", "", "", ""])
            continue
        top = best(o.windows, target_ms)
        missed = next((w for w in o.windows if w.all.p99 >= target_ms or w.errors), None)
        rows.append(
            [
                o.kind,
                o.workers,
                _rate(top.rate) if top else f"< {_rate(o.windows[0].rate)}",
                f"{ms(top.all.p50)} / {ms(top.all.p99)}" if top else "-",
                f"{top.server_cores:.2f}" if top else "-",
                f"{_rate(missed.rate)}: p99 {ms(missed.all.p99)}" if missed else "none missed",
            ]
        )
    return rows


def window_rows(outcomes: Sequence[Outcome], target_ms: float) -> list[list[object]]:
    rows: list[list[object]] = []
    for o in outcomes:
        for w in o.windows:
            kinds = " / ".join(ms(w.by_kind[k].p99) for k in ("me", "search", "list", "write"))
            errors = ", ".join(f"{n} {what}" for what, n in sorted(w.errors.items())) or "0"
            rows.append(
                [
                    o.kind,
                    o.workers,
                    _rate(w.rate),
                    f"{w.achieved:.0f}",
                    ms(w.all.p50),
                    ms(w.all.p99) + (" ok" if w.all.p99 < target_ms and not w.errors else " MISS"),
                    kinds,
                    errors,
                    ms(w.send_lag_p99),
                    f"{w.server_cores:.2f}",
                    "-" if w.postgres_cores is None else f"{w.postgres_cores:.2f}",
                    f"{w.loadgen_cores:.2f}",
                    f"{w.others_cores:.2f}",
                    f"{w.machine_busy * 100:.0f}%",
                ]
            )
    return rows


def render(outcomes: Sequence[Outcome], args: argparse.Namespace, idle: str) -> str:
    target = args.target_ms
    lines = [
        f"mixed API load: {machine_line()}",
        f"fleet {args.hosts} hosts x 8 GPUs, {args.instances} instances; per ten requests 3 "
        f"/v1/me, 3 offer searches, 3 instance lists, 1 label write; {args.connections} "
        f"kept-alive connections; {args.duration:.0f} s per rate after {args.warmup:.0f} s of "
        "warm-up; latency from when each request was due",
        idle,
    ]
    summary = markdown_table(
        [
            "database",
            "workers",
            f"highest req/s with p99 < {target:.0f} ms",
            "p50 / p99 there (ms)",
            "server CPU there (cores)",
            "first rate missed",
        ],
        summary_rows(outcomes, target),
    )
    windows = markdown_table(
        [
            "database",
            "workers",
            "offered req/s",
            "achieved",
            "p50 ms",
            "p99 ms",
            "p99 me / search / list / write",
            "errors",
            "send lag p99",
            "server cores",
            "Postgres cores",
            "load-gen cores",
            "others' cores",
            "machine busy",
        ],
        window_rows(outcomes, target),
    )
    return "\n".join(lines) + "\n\n" + summary + "\n\n" + windows
