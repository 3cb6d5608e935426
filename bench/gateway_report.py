"""The gateway benchmark's tables: the highest sustained rate of each target, latency at fixed
rates (and what each proxy adds to the direct path), and the issue's targets."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gateway_measure import Measurement
from report import markdown_table, ms

TARGET_ADDED_P50_MS = 1.0
TARGET_ADDED_P99_MS = 5.0
TARGET_RPS_RATIO = 3.0


@dataclass(frozen=True, slots=True)
class Run:
    """What the tables are about, for their header."""

    title: str
    lines: Sequence[str]
    skipped: dict[str, str]  # target -> why it was left out
    rates: Sequence[float]


def pct(share: float) -> str:
    return "-" if math.isnan(share) else f"{100 * share:.0f}%"


def errors_text(m: Measurement) -> str:
    return ", ".join(f"{n} {what}" for what, n in sorted(m.errors.items())) or "0"


def cpu_per_request(m: Measurement) -> str:
    if m.target == "direct" or not m.completed or m.before is None or m.after is None:
        return "-"
    return f"{1000 * (m.after.server - m.before.server) / m.completed:.2f} ms"


def server_cpu(m: Measurement) -> str:
    return "-" if m.target == "direct" else pct(m.cpu("server"))


def find(
    ms_: Sequence[Measurement], target: str, round_no: int, rate: float | None
) -> Measurement | None:
    for m in ms_:
        if m.target == target and m.round == round_no and m.rate == rate and m.skipped is None:
            return m
    return None


def added(
    ms_: Sequence[Measurement], m: Measurement, pick: Callable[[Measurement], float]
) -> float:
    """``pick`` of ``m`` minus the same of the direct path in the same round, at the same rate."""
    direct = find(ms_, "direct", m.round, m.rate)
    if direct is None or m.target == "direct" or not m.completed or not direct.completed:
        return math.nan
    return pick(m) - pick(direct)


def signed(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:+.2f}"


def capacity_table(ms_: Sequence[Measurement]) -> str:
    headers = [
        "target",
        "round",
        "req/s",
        "errors",
        "latency p50 / p99 ms",
        "TTFB p50 ms",
        "server CPU",
        "server CPU per request",
        "upstream CPU",
        "load-gen CPU",
        "machine busy",
    ]
    rows = [
        [
            m.target,
            m.round,
            f"{m.rps:.0f}",
            errors_text(m),
            f"{ms(m.latency.p50)} / {ms(m.latency.p99)}",
            ms(m.ttfb.p50),
            server_cpu(m),
            cpu_per_request(m),
            pct(m.cpu("upstream")),
            pct(m.cpu("loadgen")),
            pct(m.machine_busy()),
        ]
        for m in ms_
        if m.rate is None
    ]
    return markdown_table(headers, rows)


def latency_table(ms_: Sequence[Measurement]) -> str:
    headers = [
        "rate",
        "target",
        "round",
        "req/s",
        "errors",
        "p50 / p90 / p99 / max ms",
        "added p50 / p99 ms",
        "TTFB p50 ms",
        "send lag p99 ms",
        "server CPU",
        "server CPU per request",
    ]
    rows = []
    for m in sorted((m for m in ms_ if m.rate), key=lambda m: (m.rate or 0, m.round)):
        if m.skipped:
            rows.append([f"{m.rate:g}/s", m.target, m.round, "-", "-", m.skipped, *["-"] * 5])
            continue
        rows.append(
            [
                f"{m.rate:g}/s",
                m.target,
                m.round,
                f"{m.rps:.0f}",
                errors_text(m),
                f"{ms(m.latency.p50)} / {ms(m.latency.p90)} / {ms(m.latency.p99)} / "
                f"{ms(m.latency.max)}",
                f"{signed(added(ms_, m, lambda x: x.latency.p50))} / "
                f"{signed(added(ms_, m, lambda x: x.latency.p99))}",
                ms(m.ttfb.p50),
                ms(m.lag.p99),
                server_cpu(m),
                cpu_per_request(m),
            ]
        )
    return markdown_table(headers, rows)


def verdict(values: Sequence[float], ok: Callable[[float], bool], unit: str) -> tuple[str, str]:
    """Each round's value, and the verdict on their median."""
    real = [v for v in values if not math.isnan(v)]
    if not real:
        return "-", "-"
    shown = " / ".join(f"{v:.2f}{unit}" for v in real)
    median = statistics.median(real)
    return shown, f"median {median:.2f}{unit}: {'ok' if ok(median) else 'MISS'}"


def below(limit: float) -> Callable[[float], bool]:
    return lambda value: value < limit


def targets_table(ms_: Sequence[Measurement], run: Run) -> str:
    rounds = sorted({m.round for m in ms_})
    rows = []
    checks: tuple[tuple[str, Callable[[Measurement], float], float], ...] = (
        ("p50", lambda x: x.latency.p50, TARGET_ADDED_P50_MS),
        ("p99", lambda x: x.latency.p99, TARGET_ADDED_P99_MS),
    )
    for rate in run.rates:
        for label, pick, limit in checks:
            values = [
                added(ms_, m, pick) if (m := find(ms_, "gpuyard", r, rate)) else math.nan
                for r in rounds
            ]
            shown, said = verdict(values, below(limit), " ms")
            rows.append([f"gpuyard adds at {rate:g}/s, {label}", shown, f"< {limit:g} ms", said])
    ratios = []
    for r in rounds:
        gy, lite = find(ms_, "gpuyard", r, None), find(ms_, "litellm", r, None)
        ratios.append(gy.rps / lite.rps if gy and lite and lite.rps else math.nan)
    shown, said = verdict(ratios, lambda v: v >= TARGET_RPS_RATIO, "x")
    if "litellm" in run.skipped:
        shown, said = "-", "litellm skipped"
    rows.append(
        ["gpuyard req/s / LiteLLM req/s (closed loop)", shown, f">= {TARGET_RPS_RATIO:g}x", said]
    )
    return markdown_table(["target", "each round", "wanted", "verdict"], rows)


def render(ms_: Sequence[Measurement], run: Run) -> str:
    lines = [run.title, *run.lines]
    lines += [f"{name}: SKIPPED: {why}" for name, why in run.skipped.items()]
    return "\n".join(
        [
            "\n".join(lines),
            "",
            "Highest sustained rate: every client sends its next request when the last ends",
            "",
            capacity_table(ms_),
            "",
            "Latency at fixed rates (open loop); added = this target minus direct, same round",
            "",
            latency_table(ms_),
            "",
            "Against the targets",
            "",
            targets_table(ms_, run),
        ]
    )
