"""Agent heartbeat load: 1,000 simulated agents, each every 5 s, against one ``gpuyard server``.

For each database (Postgres, and SQLite for comparison) the script:

1. makes a scratch database and starts a real ``gpuyard server`` child process on it
   (``GPUYARD_ADMIN_KEY`` set, controllers running, as an operator would run it);
2. over HTTP, as a real fleet would: makes a renter org and key, one join token per agent,
   registers every agent (8 logical GPUs each, all of one type from a realistic mix), and rents
   ``--workloads`` one-GPU instances on every host, so each heartbeat carries assignments back;
3. brings every agent to steady state: one heartbeat to learn its assignments, one to report
   them ``running`` (the state-change events happen here, not in the measured window);
4. runs the load for ``--duration`` seconds from a lean load generator in a child process
   (heartbeat_load.py: raw asyncio streams, each agent's request bytes built once, so that the
   client's own stalls stay out of the measurement): agent ``i`` sends at ``start + i * 5 s /
   agents + k * 5 s`` (phases spread evenly; a fixed schedule, so a slow server does not slow the
   offered load), each on its own keep-alive connection, reporting its workloads ``running``;
5. reports client-observed latency (send to full response), the server's own view of the same
   requests (its Prometheus histogram, so bucket bounds), achieved rate against the target, errors,
   and CPU: the server process, the bench database's Postgres backends (and how many connections
   the server opened), the load generator, the whole machine and so the neighbours on it.

``--loads 250,500,750,1000`` measures several loads on one fleet (to find the knee);
``--profile DIR`` records the server with py-spy; ``--samples DIR`` keeps every heartbeat's
timings; ``--server-cmd`` runs another build. The fleet
set-up lives in heartbeat_fleet.py, the load in heartbeat_load.py, the CPU and histogram
accounting in resource_usage.py.

    .venv/bin/python bench/heartbeats.py            # full: 1,000 agents, 60 s, both databases
    .venv/bin/python bench/heartbeats.py --quick    # smoke test, < 30 s
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import shutil
import ssl
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import httpx
import psutil
from event_loops import new_event_loop
from heartbeat_fleet import HEARTBEAT, Agent, Setup, set_up_fleet
from load_child import expect, load_generator
from report import Latency, idle_load, machine_line, markdown_table, ms
from resource_usage import (
    CpuSnapshot,
    backend_pids,
    cpu_seconds,
    histogram_quantile,
    server_histogram,
    snapshot,
)
from scratch_db import KINDS, admin_postgres_url, postgres_unavailable, postgres_version
from scratch_db import scratch_database as scratch_db
from server_process import log_tail, running_server

from gpuyard.core.credentials import new_api_key

TARGET_P99_MS = 50.0
PERIOD_S = 5.0  # the server's default heartbeat_seconds
LOADGEN = Path(__file__).with_name("heartbeat_load.py")
START_IN_S = 1.0  # from the load generator's connections being open to its first heartbeat
PATIENT_HOST_HEALTH = {
    # Setting up 1,000 hosts over HTTP takes longer than the 20 s after which a host that has not
    # heartbeated is marked unreachable (and stops offering); in the measured window every host
    # heartbeats every 5 s, so these only keep setup from racing the host-health controller.
    "GPUYARD_HOST_UNREACHABLE_SECONDS": "3600",
    "GPUYARD_HOST_OFFLINE_SECONDS": "7200",
}


# --- the load -----------------------------------------------------------------------------------


@dataclass
class Sample:
    scheduled: float
    sent: float
    done: float
    outcome: str  # "ok", "HTTP 503", or an exception's type name


@dataclass
class Window:
    """One measured stretch of load from the first ``agents`` agents."""

    agents: int
    samples: list[Sample]
    seconds: float
    before: CpuSnapshot
    after: CpuSnapshot
    server_p50: str
    server_p99: str
    pg_sessions: int | None


@dataclass
class Outcome:
    kind: str
    skipped: str | None = None
    setup: Setup | None = None
    windows: list[Window] = field(default_factory=list)
    seconds: float = 0.0


async def bench_database(
    kind: str, args: argparse.Namespace, workdir: Path, tls: ssl.SSLContext
) -> Outcome:
    outcome = Outcome(kind)
    started = time.perf_counter()
    admin_url = admin_postgres_url(args.postgres_url)
    if kind == "postgres":
        why = await postgres_unavailable(admin_url)
        if why is not None:
            outcome.skipped = f"Postgres at {admin_url.split('@')[-1]} unreachable ({why})"
            return outcome
    admin_key = new_api_key()
    async with (
        scratch_db(kind, directory=workdir, admin_url=admin_url, migrated=False) as url,
        running_server(
            url,
            data_dir=workdir / f"server-{kind}",
            admin_key=admin_key,
            run_controllers=True,
            log_level=args.server_log_level,
            settings=PATIENT_HOST_HEALTH,
            command=args.server_cmd.split() if args.server_cmd else None,
        ) as server,
    ):
        say(f"{kind}: server pid {server.pid} on {server.base_url}; registering {args.agents}")
        setup = await set_up_fleet(server.base_url, admin_key, args, tls)
        outcome.setup = setup
        say(
            f"{kind}: registered in {setup.register_s:.1f} s, rented {setup.instances} in "
            f"{setup.rent_s:.1f} s, settled in {setup.settle_s:.1f} s"
        )
        meta = httpx.AsyncClient(base_url=server.base_url, timeout=30, verify=tls)
        try:
            for n in args.loads:
                say(f"{kind}: {n} agents for {args.duration:.0f} s")
                window = await run_window(
                    setup.agents[:n],
                    server.base_url,
                    meta,
                    args,
                    server_pid=server.pid,
                    postgres_url=url if kind == "postgres" else None,
                    label=f"{kind}-{n}",
                    plan_path=workdir / f"heartbeat-plan-{kind}-{n}.json",
                )
                outcome.windows.append(window)
        except BaseException:
            say(f"{kind}: server log tail:\n{log_tail(server.log_path)}")
            raise
        finally:
            await meta.aclose()
    outcome.seconds = time.perf_counter() - started
    say(f"{kind}: done in {outcome.seconds:.0f} s")
    return outcome


async def run_window(
    agents: Sequence[Agent],
    base_url: str,
    meta: httpx.AsyncClient,
    args: argparse.Namespace,
    *,
    server_pid: int,
    postgres_url: str | None,
    label: str,
    plan_path: Path,
) -> Window:
    """The load of ``agents`` from heartbeat_load.py, a child process, with the CPU of the
    server, the Postgres backends, the load generator and the machine read when it says the
    window starts (``measuring``) and ends (``done``)."""
    proc = psutil.Process(server_pid)
    hist_before = await server_histogram(meta, HEARTBEAT)
    pg_pids, sessions_before = await backend_pids(postgres_url) if postgres_url else (set(), 0)
    write_plan(plan_path, agents, base_url, args)
    argv = [sys.executable, str(LOADGEN), str(plan_path)]
    async with load_generator(argv, what=f"{label}: the load generator", stdin=True) as loadgen:
        assert loadgen.stdin is not None and loadgen.stdout is not None
        loadgen_proc = psutil.Process(loadgen.pid)
        await expect(loadgen.stdout, "measuring")
        t0 = time.perf_counter()
        profiler = await start_profiler(args, server_pid, label)
        before = replace(snapshot(proc, pg_pids), loadgen=cpu_seconds(loadgen_proc))
        await expect(loadgen.stdout, "done")
        sessions = None
        if postgres_url:
            pids_after, sessions_after = await backend_pids(postgres_url)
            pg_pids |= pids_after
            sessions = sessions_after - sessions_before
        after = replace(snapshot(proc, pg_pids), loadgen=cpu_seconds(loadgen_proc))
        loadgen.stdin.close()  # it waits for this before it prints its samples and exits
        out = json.loads(await loadgen.stdout.readline())
    samples = [samples_of(row, t0) for row in out["rows"]]
    if profiler is not None:
        await profiler.wait()
    hist_after = await server_histogram(meta, HEARTBEAT)
    if args.samples:
        write_samples(Path(args.samples) / f"heartbeats-{label}.csv", samples, t0)
    return Window(
        agents=len(agents),
        samples=samples,
        seconds=after.wall - before.wall,
        before=before,
        after=after,
        server_p50=histogram_quantile(hist_before, hist_after, 50),
        server_p99=histogram_quantile(hist_before, hist_after, 99),
        pg_sessions=sessions,
    )


def write_plan(
    path: Path, agents: Sequence[Agent], base_url: str, args: argparse.Namespace
) -> None:
    """What heartbeat_load.py sends: agent ``i`` (of this list) posts its body at ``t0 + i *
    spacing + k * PERIOD_S`` for ``--duration`` seconds, ``t0`` one second after its connections
    are open."""
    plan = {
        "url": base_url,
        "path": HEARTBEAT,
        "period_s": PERIOD_S,
        "spacing_s": PERIOD_S / len(agents),
        "duration_s": args.duration,
        "start_in_s": START_IN_S,
        "shared": args.connections == "shared",
        "agents": [{"credential": a.credential, "body": a.body.decode()} for a in agents],
    }
    path.write_text(json.dumps(plan))


def samples_of(row: list[float | str], t0: float) -> Sample:
    """A heartbeat as heartbeat_load.py reports it: due, sent and answered in ms from the
    window's start, and its outcome when not ``ok``."""
    due, sent, done = (t0 + float(x) / 1000 for x in row[:3])
    return Sample(due, sent, done, str(row[3]) if len(row) > 3 else "ok")


def write_samples(path: Path, samples: Sequence[Sample], t0: float) -> None:
    """One line per heartbeat: seconds from the start of the window it was scheduled, sent and
    answered at, and its outcome."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as out:
        out.write("scheduled_s,sent_s,done_s,latency_ms,outcome\n")
        for x in sorted(samples, key=lambda x: x.sent):
            out.write(
                f"{x.scheduled - t0:.4f},{x.sent - t0:.4f},{x.done - t0:.4f},"
                f"{(x.done - x.sent) * 1000:.2f},{x.outcome}\n"
            )
    say(f"samples written to {path}")


async def start_profiler(
    args: argparse.Namespace, pid: int, label: str
) -> asyncio.subprocess.Process | None:
    """``py-spy record`` of the server for the measured window (``--profile DIR``), as collapsed
    stacks (``DIR/heartbeats-<db>-<agents>.txt``; feed them to flamegraph.pl or speedscope)."""
    if args.profile is None:
        return None
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    out = Path(args.profile) / f"heartbeats-{label}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    say(f"{label}: profiling the server with py-spy into {out}")
    return await asyncio.create_subprocess_exec(
        py_spy,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(int(args.duration)),
        "--rate",
        "100",
        *(["--gil"] if args.profile_gil else []),
        "--format",
        "raw",
        "--output",
        str(out),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


# --- output -------------------------------------------------------------------------------------


def say(message: str) -> None:
    print(f"  .. {message}", file=sys.stderr, flush=True)


def pct(seconds: float, wall: float, cores: float = 1.0) -> str:
    return f"{100 * seconds / wall / cores:.0f}%" if wall > 0 else "-"


def column(o: Outcome, w: Window) -> list[str]:
    assert o.setup is not None
    cores = psutil.cpu_count() or 1
    wall = w.seconds
    good = [s for s in w.samples if s.outcome == "ok"]
    latency = Latency.of([(s.done - s.sent) * 1000 for s in good])
    lag = Latency.of([(s.sent - s.scheduled) * 1000 for s in w.samples])
    errors = collections.Counter(s.outcome for s in w.samples if s.outcome != "ok")
    error_text = ", ".join(f"{n} {what}" for what, n in errors.most_common()) or "0"
    server_cpu = w.after.server - w.before.server
    server_sys = w.after.server_system - w.before.server_system
    loadgen_cpu = w.after.loadgen - w.before.loadgen
    pg_cpu = sum(t - w.before.postgres.get(pid, 0.0) for pid, t in w.after.postgres.items())
    busy_s = w.after.machine_busy - w.before.machine_busy
    busy = busy_s / max(1e-9, w.after.machine_total - w.before.machine_total)
    others = max(0.0, busy_s - server_cpu - loadgen_cpu - pg_cpu)
    target_rate = w.agents / PERIOD_S
    rate = len(good) / wall
    verdict = "ok" if latency.p99 < TARGET_P99_MS else "MISS"
    setup = o.setup
    return [
        f"{len(good)} ok of {len(w.samples)} sent in {wall:.0f} s",
        f"{rate:.1f}/s of {target_rate:.0f}/s ({100 * rate / target_rate:.0f}%)",
        error_text,
        f"{ms(latency.p50)} / {ms(latency.p90)} / {ms(latency.p99)} / {ms(latency.max)}",
        f"{ms(latency.p99)} {verdict}",
        f"{w.server_p50} / {w.server_p99}",
        f"{ms(lag.p99)} / {ms(lag.max)}",
        f"{pct(server_cpu, wall)} of a core ({pct(server_sys, wall)} kernel), "
        f"{pct(server_cpu, wall, cores)} of machine",
        f"{pct(pg_cpu, wall)} of a core" if o.kind == "postgres" else "n/a (in server)",
        "n/a" if w.pg_sessions is None else str(w.pg_sessions),
        f"{pct(loadgen_cpu, wall)} of a core",
        f"{100 * busy:.0f}%",
        f"{pct(others, wall)} of a core",
        f"{1000 * server_cpu / max(1, len(w.samples)):.1f} ms",
        f"{len(setup.agents) / setup.register_s:.0f}/s ({setup.register_s:.0f} s)",
        f"{setup.instances / setup.rent_s:.0f}/s ({setup.rent_s:.0f} s)"
        if setup.instances
        else "-",
        f"{o.seconds:.0f} s",
    ]


LABELS = (
    "heartbeats",
    "achieved rate vs target",
    "errors",
    "latency p50 / p90 / p99 / max (ms)",
    f"p99 vs target < {TARGET_P99_MS:.0f} ms",
    "server-side p50 / p99 (histogram bucket, ms)",
    "load-gen send lag p99 / max (ms)",
    "server process CPU",
    "Postgres CPU (bench database's backends alive at the end)",
    "Postgres connections opened during the load",
    "load generator CPU",
    "machine busy (all processes)",
    "other processes (neighbours, py-spy)",
    "server CPU per heartbeat",
    "setup: join + register (rate)",
    "setup: rent instances (rate)",
    "whole run incl. setup",
)


def render(outcomes: Sequence[Outcome], args: argparse.Namespace, idle: str) -> str:
    done = [(o, w) for o in outcomes if o.skipped is None for w in o.windows]
    headers = ["", *(f"{o.kind}, {w.agents} agents" for o, w in done)]
    columns = [column(o, w) for o, w in done]
    rows = [[label, *(c[i] for c in columns)] for i, label in enumerate(LABELS)]
    lines = [
        f"heartbeats: {machine_line()}",
        f"{args.agents} agents x {args.gpus} logical GPUs, {args.workloads} running workloads "
        f"each, every {PERIOD_S:.0f} s for {args.duration:.0f} s; {args.connections} connections; "
        f"server log level {args.server_log_level}",
        idle,
    ]
    lines += [f"{o.kind}: SKIPPED: {o.skipped}" for o in outcomes if o.skipped]
    return "\n".join(lines) + "\n\n" + markdown_table(headers, rows)


# --- entry point --------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Heartbeat load from simulated agents against one real `gpuyard server` "
        "process per database. Prints a Markdown table; progress goes to stderr.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--agents", type=int, default=1_000, help="simulated agents (hosts)")
    parser.add_argument("--duration", type=float, default=60, help="seconds of measured load")
    parser.add_argument(
        "--loads",
        default=None,
        help="comma-separated agent counts to measure one after the other on the same fleet, "
        "e.g. 250,500,1000 to find the knee; none: just --agents",
    )
    parser.add_argument("--gpus", type=int, default=8, help="logical GPUs per agent")
    parser.add_argument(
        "--workloads", type=int, default=2, help="one-GPU instances rented on every host"
    )
    parser.add_argument(
        "--db", default="postgres,sqlite", help="comma-separated databases: postgres,sqlite"
    )
    parser.add_argument(
        "--connections",
        choices=("per-agent", "shared"),
        default="per-agent",
        help="each agent on its own keep-alive connection, or one shared pool",
    )
    parser.add_argument(
        "--setup-concurrency", type=int, default=16, help="parallel requests while setting up"
    )
    parser.add_argument(
        "--server-cmd",
        default=None,
        help="command that runs the server, configured by GPUYARD_* variables, to compare "
        "another build; none: this Python -m gpuyard.cli.main "
        "server",
    )
    parser.add_argument(
        "--server-log-level", default="warning", help="GPUYARD_LOG_LEVEL of the server"
    )
    parser.add_argument(
        "--postgres-url",
        default=None,
        help="admin URL of the Postgres server to create the scratch database on; none: "
        "$GPUYARD_BENCH_POSTGRES_URL, else $GPUYARD_TEST_POSTGRES_URL, else 127.0.0.1:5432",
    )
    parser.add_argument("--seed", type=int, default=7, help="seed of the fleet generator")
    parser.add_argument(
        "--samples",
        metavar="DIR",
        default=None,
        help="write every heartbeat's timings to DIR/heartbeats-<db>-<agents>.csv",
    )
    parser.add_argument(
        "--profile",
        metavar="DIR",
        default=None,
        help="record the server with py-spy (pip install py-spy) during the load, into DIR",
    )
    parser.add_argument(
        "--profile-gil",
        action="store_true",
        help="with --profile: only samples holding the GIL (Python CPU, no waiting in syscalls)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test in < 30 s: 100 agents for 10 s, on Postgres only",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.agents, args.duration = 100, 10
        if args.db == parser.get_default("db"):
            args.db = "postgres"
    args.db = [d.strip() for d in args.db.split(",") if d.strip()]
    args.loads = [int(n) for n in args.loads.split(",")] if args.loads else [args.agents]
    if any(not 0 < n <= args.agents for n in args.loads):
        parser.error("--loads: each count must be between 1 and --agents")
    for kind in args.db:
        if kind not in KINDS:
            parser.error(f"--db: unknown database {kind!r}")
    return args


async def main(args: argparse.Namespace) -> None:
    idle = idle_load()  # before anything of ours runs
    started = time.perf_counter()
    tls = ssl.create_default_context()  # one context for every client (loopback is plain HTTP)
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="gpuyard-bench-") as tmp:
        for kind in args.db:
            outcomes.append(await bench_database(kind, args, Path(tmp), tls))
    print(render(outcomes, args, idle))
    extra = ""
    if any(o.kind == "postgres" and o.skipped is None for o in outcomes):
        extra = f"Postgres {await postgres_version(admin_postgres_url(args.postgres_url))}; "
    print(f"\n{extra}total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(main(parse_args()))
