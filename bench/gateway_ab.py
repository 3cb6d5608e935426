"""Builds of gpuyard compared request by request: the gateway's added latency at a low rate.

``gateway.py`` measures one build, each target in its own window, so what a change gains is read
across windows that the neighbours on a shared machine make noisy. Here the fake upstream is
served directly and through each build given (each its own ``gpuyard server`` on its own scratch
SQLite, set up as in gateway.py), and one request at a time goes to each target in turn (a new
random order each round) at a fixed pace: every build sees the same moments of the machine.

    .venv/bin/python bench/gateway_ab.py --build now=src --build base=/tmp/base/src --seconds 60

A build is ``NAME=SRC``: a ``src`` folder holding the ``gpuyard`` package (a git worktree of
another commit), imported ahead of the installed one. Without ``--build``, this tree against
itself (the noise floor). Prints one Markdown table: per target, p50/p90/p99 of the time from
sending to the last byte and to the first body byte, and what each build adds to the direct path
at p50, and, for two builds or more, each against the first.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from event_loops import new_event_loop
from gateway_cluster import gpuyard_serving
from gateway_load import BadAnswer, Connection, clock, request_bytes
from report import idle_load, machine_line, percentile
from scratch_db import admin_postgres_url

from gateway import upstream_serving

TIMEOUT_S = 30.0


@dataclass
class Samples:
    name: str
    latency_ms: list[float] = field(default_factory=list)
    ttfb_ms: list[float] = field(default_factory=list)
    errors: int = 0


def build_command(src: str) -> list[str]:
    """``gpuyard server`` importing the package from ``src`` first."""
    code = (
        f"import sys; sys.path.insert(0, {str(Path(src).resolve())!r}); "
        "from gpuyard.cli.main import app; app(['server'])"
    )
    return [sys.executable, "-c", code]


async def measure(
    targets: Sequence[tuple[str, str, str | None]],
    *,
    model: str,
    rate: float,
    seconds: float,
    seed: int = 0,
) -> list[Samples]:
    """One request at a time, ``rate`` requests a second in all: every target once per round,
    in a random order (no build always follows the same one)."""
    conns = []
    for _, url, key in targets:
        parts = urlsplit(url)
        request = request_bytes(url, "/v1/chat/completions", model, key)
        conns.append(Connection(parts.hostname or "127.0.0.1", parts.port or 80, request))
    samples = [Samples(name) for name, _, _ in targets]
    for conn in conns:  # open and warm every connection first
        await conn.exchange()
    rng = random.Random(seed)
    order: list[int] = []
    start = clock()
    k = 0
    while (due := start + k / rate) < start + seconds:
        delay = due - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        if not order:  # each target once per round, in a new order each round
            order = rng.sample(range(len(targets)), len(targets))
        i = order.pop()
        k += 1
        sent = clock()
        try:
            async with asyncio.timeout(TIMEOUT_S):
                first = await conns[i].exchange()
        except (OSError, asyncio.IncompleteReadError, ValueError, TimeoutError, BadAnswer):
            conns[i].close()
            samples[i].errors += 1
            continue
        done = clock()
        samples[i].latency_ms.append((done - sent) * 1000)
        samples[i].ttfb_ms.append((first - sent) * 1000)
    for conn in conns:
        conn.close()
    return samples


def render(samples: Sequence[Samples], header: Sequence[str]) -> str:
    direct = statistics.median(samples[0].latency_ms)
    first_build = statistics.median(samples[1].latency_ms) if len(samples) > 1 else direct
    rows = [
        "| target | requests | errors | p50 / p90 / p99 ms | TTFB p50 ms | added p50 ms "
        "| vs first build p50 ms |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for i, s in enumerate(samples):
        lat = s.latency_ms
        p50 = statistics.median(lat)
        spread = " / ".join(f"{percentile(lat, q):.2f}" for q in (50, 90, 99))
        added = f"+{p50 - direct:.3f}" if i else "-"
        versus = f"{p50 - first_build:+.3f}" if i > 1 else "-"
        ttfb = statistics.median(s.ttfb_ms)
        rows.append(
            f"| {s.name} | {len(lat)} | {s.errors} | {spread} | {ttfb:.2f} | {added} | {versus} |"
        )
    return "\n".join([*header, "", *rows])


async def run(args: argparse.Namespace) -> str:
    idle = idle_load()
    with tempfile.TemporaryDirectory(prefix="gpuyard-gateway-ab-") as tmp:
        workdir = Path(tmp)
        async with contextlib.AsyncExitStack() as stack:
            upstream = await stack.enter_async_context(upstream_serving(args, workdir))
            targets: list[tuple[str, str, str | None]] = [("direct", upstream.base_url, None)]
            for name, src in args.builds:
                print(f"  .. starting build {name} ({src})", file=sys.stderr, flush=True)
                gy = await stack.enter_async_context(
                    gpuyard_serving(
                        upstream.port,
                        args.model,
                        db="sqlite",
                        workdir=workdir / name,
                        admin_url=admin_postgres_url(None),
                        command=build_command(src),
                    )
                )
                targets.append((name, gy.base_url, gy.key))
            print(f"  .. measuring for {args.seconds:g} s", file=sys.stderr, flush=True)
            started = time.perf_counter()
            samples = await measure(targets, model=args.model, rate=args.rate, seconds=args.seconds)
            took = time.perf_counter() - started
    header = [
        f"gateway A/B: {machine_line()}",
        f"{args.rate:g} req/s in all, one at a time, targets in turn ({args.rate / len(targets):g}"
        f"/s each) for {took:.0f} s; streaming chat completions of {args.tokens} content chunks",
        idle,
    ]
    return render(samples, header)


def parse_build(value: str) -> tuple[str, str]:
    name, sep, src = value.partition("=")
    if not sep or not name or not (Path(src) / "gpuyard").is_dir():
        raise argparse.ArgumentTypeError(f"{value!r}: NAME=SRC, SRC holding the gpuyard package")
    return name, src


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="gpuyard builds and the direct path, interleaved request by request.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--build",
        dest="builds",
        action="append",
        type=parse_build,
        default=None,
        help="NAME=SRC, repeatable; default: this tree twice (the noise floor)",
    )
    parser.add_argument("--rate", type=float, default=30, help="requests a second, all targets")
    parser.add_argument("--seconds", type=float, default=60, help="how long to send")
    parser.add_argument("--tokens", type=int, default=16, help="content chunks per answer")
    parser.add_argument("--model", default="bench-model", help="the upstream's model name")
    args = parser.parse_args(argv)
    if args.builds is None:
        here = str(Path(__file__).resolve().parent.parent / "src")
        args.builds = [("a", here), ("b", here)]
    if len({name for name, _ in args.builds}) != len(args.builds):
        parser.error("--build: names must differ")
    return args


if __name__ == "__main__":
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        print(runner.run(run(parse_args())))
