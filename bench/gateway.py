"""The inference gateway's overhead: the same streaming load sent to a fast fake OpenAI
upstream directly, through gpuyard, and through LiteLLM's proxy, in one run.

What runs, each in its own process, all on this machine:

- the fake upstream (gateway_upstream.py): a raw-asyncio OpenAI-compatible server that streams a
  fixed answer (``--tokens`` content chunks, a finish chunk, the usage chunk, ``[DONE]``);
- gpuyard: a real ``gpuyard server`` on a scratch SQLite database (``--db``) with its controllers,
  serving the upstream as the one replica of a cluster, set up over HTTP as an operator, a customer
  and a host agent would (gateway_cluster.py); requests go to ``/v1/chat/completions`` with the
  org's key, so through authentication, model routing, the streaming proxy, usage accounting and
  request logs;
- LiteLLM's proxy (gateway_litellm.py), installed in its own virtualenv on first use, routing the
  same model to the same upstream (``--skip-litellm`` leaves it out);
- the load generator (gateway_load.py), one process per measured window: ``--concurrency``
  clients, each on a keep-alive connection, sending ``stream: true`` chat completions and reading
  each answer to its last byte.

Each round measures every target in turn (direct, gpuyard, LiteLLM; ``--rounds`` alternate them,
since a shared machine is noisy):

1. closed loop: every client sends its next request as soon as its last answer ends, for
   ``--duration`` s after ``--warmup`` s; the completions per second are the highest rate the
   target sustains with that many clients (its saturation throughput);
2. open loop at each of ``--rates`` (requests due at a fixed pace, spread over the same clients):
   latency from sending to the last byte (and to the first), p50/p90/p99/max. Under saturation
   latency only measures the queue (clients / throughput), so the latency a proxy *adds* is read
   here, as the difference between its percentile and the direct path's at the same rate in the
   same round. A rate above 80% of a target's closed-loop throughput is skipped for that target.

For every window it also reads the CPU time of the target's server process (with its children),
of the upstream and of the load generator, and how busy the whole machine was. ``--profile DIR``
records gpuyard and LiteLLM with py-spy in their closed-loop windows; ``--server-cmd`` runs another
build of gpuyard's server.

    .venv/bin/python bench/gateway.py --duration 20        # ~8 min; LiteLLM installed on first use
    .venv/bin/python bench/gateway.py --quick              # ~40 s smoke test, without LiteLLM
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from gateway_cluster import gpuyard_serving
from gateway_litellm import DEFAULT_VENV, Unavailable, litellm_serving
from gateway_measure import Measurement, Target, measure
from gateway_process import child_process
from gateway_report import Run, render
from report import idle_load, machine_line
from scratch_db import KINDS, admin_postgres_url, postgres_unavailable
from server_process import free_port

from gpuyard import __version__

UPSTREAM = Path(__file__).with_name("gateway_upstream.py")
MAX_UTILISATION = 0.8  # open-loop rates above this share of a target's capacity are skipped


def say(message: str) -> None:
    print(f"  .. {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True, slots=True)
class Upstream:
    base_url: str
    port: int
    pid: int


@asynccontextmanager
async def upstream_serving(args: argparse.Namespace, workdir: Path) -> AsyncIterator[Upstream]:
    port = free_port()
    argv = [sys.executable, str(UPSTREAM), "--port", str(port), "--model", args.model]
    argv += ["--tokens", str(args.tokens)]
    base_url = f"http://127.0.0.1:{port}"
    async with child_process(
        argv, log_path=workdir / "upstream.log", ready_url=f"{base_url}/health", ready_timeout_s=30
    ) as proc:
        yield Upstream(base_url, port, proc.pid)


def profile_path(
    args: argparse.Namespace, target: Target, round_no: int, rate: float | None
) -> Path | None:
    """Where py-spy records a proxy's closed-loop window, with ``--profile DIR``."""
    if args.profile is None or rate is not None or target.pid is None:
        return None
    return Path(args.profile) / f"gateway-{target.name}-round{round_no}.txt"


async def measure_round(
    targets: Sequence[Target], args: argparse.Namespace, round_no: int, upstream_pid: int
) -> list[Measurement]:
    async def window(target: Target, rate: float | None) -> Measurement:
        return await measure(
            target,
            round_no=round_no,
            rate=rate,
            model=args.model,
            concurrency=args.concurrency,
            warmup=args.warmup,
            duration=args.duration,
            upstream_pid=upstream_pid,
            profile=profile_path(args, target, round_no, rate),
        )

    out: list[Measurement] = []
    for target in targets:
        say(f"round {round_no}: {target.name}, closed loop, {args.concurrency} clients")
        top = await window(target, None)
        say(f"round {round_no}: {target.name}: {top.rps:.0f} req/s, {top.errors or 'no errors'}")
        out.append(top)
        for rate in args.rates:
            if rate > MAX_UTILISATION * top.rps:
                why = f"above {MAX_UTILISATION:.0%} of its {top.rps:.0f} req/s"
                out.append(Measurement(target.name, round_no, rate, skipped=why))
                continue
            say(f"round {round_no}: {target.name}, {rate:g} req/s")
            out.append(await window(target, rate))
    return out


async def start_litellm(
    stack: contextlib.AsyncExitStack, args: argparse.Namespace, upstream: Upstream, workdir: Path
) -> tuple[Target | None, str]:
    """LiteLLM's target and a line about it, or None and why it is skipped."""
    if args.skip_litellm:
        return None, "--skip-litellm"
    say("starting LiteLLM's proxy (slow to import)")
    try:
        lite = await stack.enter_async_context(
            litellm_serving(
                args.model,
                upstream.base_url,
                venv=Path(args.litellm_venv),
                workers=args.litellm_workers,
                workdir=workdir,
            )
        )
    except Unavailable as exc:
        return None, str(exc)
    line = f"LiteLLM {lite.version}, {args.litellm_workers} worker(s), pid {lite.pid}"
    return Target("litellm", lite.base_url, lite.key, lite.pid), line


async def run(args: argparse.Namespace) -> tuple[list[Measurement], list[str], dict[str, str]]:
    skipped: dict[str, str] = {}
    lines: list[str] = []
    admin_url = admin_postgres_url(args.postgres_url)
    if args.db == "postgres" and (why := await postgres_unavailable(admin_url)):
        raise SystemExit(f"Postgres at {admin_url.split('@')[-1]} unreachable ({why})")
    with tempfile.TemporaryDirectory(prefix="gpuyard-gateway-bench-") as tmp:
        workdir = Path(tmp)
        async with contextlib.AsyncExitStack() as stack:
            upstream = await stack.enter_async_context(upstream_serving(args, workdir))
            say(f"fake upstream on {upstream.base_url}; starting gpuyard")
            gy = await stack.enter_async_context(
                gpuyard_serving(
                    upstream.port,
                    args.model,
                    db=args.db,
                    workdir=workdir,
                    admin_url=admin_url,
                    command=args.server_cmd.split() if args.server_cmd else None,
                )
            )
            lines.append(f"gpuyard {__version__} on {args.db}, pid {gy.pid}")
            targets = [
                Target("direct", upstream.base_url, None, None),
                Target("gpuyard", gy.base_url, gy.key, gy.pid),
            ]
            lite, line = await start_litellm(stack, args, upstream, workdir)
            if lite is None:
                skipped["litellm"] = line
            else:
                targets.append(lite)
                lines.append(line)
            out: list[Measurement] = []
            for round_no in range(1, args.rounds + 1):
                out += await measure_round(targets, args, round_no, upstream.pid)
    return out, lines, skipped


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Streaming chat completions to a fake upstream: directly, through gpuyard "
        "and through LiteLLM's proxy. Prints Markdown tables; progress goes to stderr.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--duration", type=float, default=10, help="seconds of each window")
    parser.add_argument("--warmup", type=float, default=2, help="unmeasured seconds before each")
    parser.add_argument("--concurrency", type=int, default=64, help="clients (connections)")
    parser.add_argument(
        "--rates",
        default="10,50",
        help="comma-separated open-loop rates (req/s) at which latency is compared",
    )
    parser.add_argument("--rounds", type=int, default=2, help="times every target is measured")
    parser.add_argument("--tokens", type=int, default=16, help="content chunks per answer")
    parser.add_argument("--model", default="bench-model", help="the upstream's model name")
    parser.add_argument("--db", choices=KINDS, default="sqlite", help="gpuyard's database")
    parser.add_argument(
        "--postgres-url", default=None, help="with --db postgres: where to make a scratch database"
    )
    parser.add_argument(
        "--server-cmd",
        default=None,
        help="command that runs gpuyard's server, configured by GPUYARD_* variables, to compare "
        "another build; none: this Python -m gpuyard.cli.main server",
    )
    parser.add_argument("--skip-litellm", action="store_true", help="leave LiteLLM out")
    parser.add_argument(
        "--litellm-venv", default=str(DEFAULT_VENV), help="LiteLLM's virtualenv (made if missing)"
    )
    parser.add_argument(
        "--litellm-workers", type=int, default=1, help="LiteLLM's --num_workers (processes)"
    )
    parser.add_argument(
        "--profile",
        metavar="DIR",
        default=None,
        help="record gpuyard and LiteLLM with py-spy (pip install py-spy) in their closed-loop "
        "windows, as collapsed stacks in DIR",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test in about 40 s: windows of 3 s, one round, 10 req/s, without LiteLLM",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.warmup, args.rounds, args.rates = 3, 1, 1, "10"
        args.skip_litellm = True
    try:
        args.rates = [float(r) for r in args.rates.split(",") if r.strip()]
    except ValueError:
        parser.error("--rates: numbers separated by commas")
    if any(r <= 0 for r in args.rates):
        parser.error("--rates: each rate must be positive")
    return args


async def main(args: argparse.Namespace) -> None:
    idle = idle_load()  # before anything of ours runs
    started = time.perf_counter()
    measurements, lines, skipped = await run(args)
    header = [
        f"streaming chat completions of {args.tokens} content chunks (+ finish, usage, [DONE]); "
        f"{args.concurrency} clients; windows of {args.duration:g} s after {args.warmup:g} s "
        f"warm-up; {args.rounds} round(s)",
        *lines,
        idle,
    ]
    title = f"gateway: {machine_line()}"
    print(render(measurements, Run(title, header, skipped, args.rates)))
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
