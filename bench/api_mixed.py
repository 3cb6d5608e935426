"""A mixed API load at rising rates against ``gpuyard server --workers W``, on SQLite and Postgres:
the highest rate each (database, workers) serves with p99 under 50 ms.

The mix, in every ten requests: three ``GET /v1/me``; three offer searches (``GET
/v1/orgs/{org}/offers?q=…`` twice, ``POST /api/v0/bundles/`` once: the same Vast filter, RTX
4090s with at least 24 GB, cheapest first, 20 offers); three ``GET /v1/orgs/{org}/vms?limit=20``;
and one write, ``PATCH /v1/orgs/{org}/vms/{id}`` with a new label, on the tenant's instances in
turn. All as one tenant whose key may write.

For each database: a fleet written straight into a scratch database (offer_fleet.py; 2,000 hosts x
8 GPUs by default), the tenant's write key, and ``--instances`` instances rented through the API
at the first start. Then for each worker count a ``gpuyard server --workers W`` on it (its
controllers running; host health patient, since the fleet never heartbeats), a warm-up second,
and the rates of ``--rates`` one after the other, each a window of ``--duration`` seconds from a
new load-generator process (api_mixed_load.py), until a window's p99 reaches ``--target-ms`` or
has errors. Latency is from when a request was due to when its whole answer was read.

    .venv/bin/python bench/api_mixed.py            # ~5 min: both databases, 1 and 2 workers
    .venv/bin/python bench/api_mixed.py --quick    # < 1 min: a smaller fleet, 2 s windows
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from api_mixed_report import Window, render
from event_loops import new_event_loop
from load_child import expect, load_generator
from offer_fleet import populate
from report import idle_load
from resource_usage import backend_pids, cpu_seconds, postgres_cpu
from scratch_db import KINDS, admin_postgres_url, postgres_unavailable, postgres_version
from scratch_db import scratch_database as scratch_db
from server_process import ServerProcess, log_tail, running_server

from gpuyard.core.clock import SystemClock
from gpuyard.core.credentials import new_api_key
from gpuyard.core.principal import Scope
from gpuyard.server.db import create_engine, session_factory, write_session
from gpuyard.server.services import api_keys

LOADGEN = Path(__file__).with_name("api_mixed_load.py")
START_IN_S = 0.5
PATIENT_HOST_HEALTH = {  # the fleet is written once and never heartbeats
    "GPUYARD_HOST_UNREACHABLE_SECONDS": "86400",
    "GPUYARD_HOST_OFFLINE_SECONDS": "172800",
}
SEARCH = {
    "gpu_name": {"eq": "RTX 4090"},
    "gpu_ram": {"gte": 24000},
    "order": [["dph_total", "asc"]],
    "limit": 20,
}


@dataclass
class Tenant:
    org_id: str
    key: str
    instances: list[str] = field(default_factory=list)


@dataclass
class Outcome:
    kind: str
    workers: int
    windows: list[Window] = field(default_factory=list)
    skipped: str | None = None


def mix(tenant: Tenant, writes: int) -> list[dict[str, Any]]:
    """The requests in the order they are sent, over and over: ``writes`` cycles of ten, each
    with its write to the next instance."""
    org, key = tenant.org_id, tenant.key
    me = {"kind": "me", "method": "GET", "path": "/v1/me"}
    q = httpx.QueryParams({"q": json.dumps(SEARCH), "limit": "20"})
    native = {"kind": "search", "method": "GET", "path": f"/v1/orgs/{org}/offers?{q}"}
    vast = {"kind": "search", "method": "POST", "path": "/api/v0/bundles/", "body": SEARCH}
    listing = {"kind": "list", "method": "GET", "path": f"/v1/orgs/{org}/vms?limit=20"}
    out: list[dict[str, Any]] = []
    for i in range(writes):
        vm = tenant.instances[i % len(tenant.instances)]
        write = {
            "kind": "write",
            "method": "PATCH",
            "path": f"/v1/orgs/{org}/vms/{vm}",
            "body": {"label": f"bench-{i}"},
        }
        search = (native, vast, native) if i % 2 else (native, native, vast)
        out += [me, search[0], listing, me, search[1], listing, me, search[2], listing, write]
    return [{**r, "key": key} for r in out]


async def make_tenant(url: str, org_id: str) -> Tenant:
    engine = create_engine(url)
    try:
        async with write_session(session_factory(engine)) as session:
            key = await api_keys.create_key(
                session, clock=SystemClock(), org_id=org_id, name="bench", scopes=[Scope.WRITE]
            )
        return Tenant(org_id=org_id, key=key.secret)
    finally:
        await engine.dispose()


async def rent(base_url: str, tenant: Tenant, count: int) -> None:
    """``count`` one-GPU instances of the cheapest offers, through the API."""
    headers = {"Authorization": f"Bearer {tenant.key}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as client:
        while len(tenant.instances) < count:
            r = await client.get(
                f"/v1/orgs/{tenant.org_id}/offers", params={"limit": "100", "q": "{}"}
            )
            r.raise_for_status()
            offers = [o for o in r.json()["data"] if o["num_gpus"] == 1]
            if not offers:
                raise RuntimeError("no one-GPU offer left to rent")
            for offer in offers[: count - len(tenant.instances)]:
                made = await client.post(
                    f"/v1/orgs/{tenant.org_id}/vms", json={"offer_id": offer["id"]}
                )
                if made.status_code == 201:
                    tenant.instances.append(made.json()["id"])


def server_processes(pid: int) -> list[psutil.Process]:
    parent = psutil.Process(pid)
    return [parent, *parent.children(recursive=True)]


def cpu_of(processes: Sequence[psutil.Process]) -> float:
    total = 0.0
    for proc in processes:
        try:
            total += cpu_seconds(proc)
        except psutil.NoSuchProcess:
            continue
    return total


def machine_busy() -> tuple[float, float]:
    times = psutil.cpu_times()
    total = sum(times)
    return total - times.idle - getattr(times, "iowait", 0.0), total


def write_plan(path: Path, plan: dict[str, Any]) -> None:
    path.write_text(json.dumps(plan))


async def run_window(
    plan: dict[str, Any], plan_path: Path, *, server_pid: int, postgres_url: str | None
) -> Window:
    """One window from a new load-generator process, with the CPU of the server's processes,
    of the bench database's Postgres backends, of the load generator and of the machine read
    when it says ``measuring`` and ``done``."""
    write_plan(plan_path, plan)
    servers = server_processes(server_pid)
    argv = [sys.executable, str(LOADGEN), str(plan_path)]
    async with load_generator(argv, what="the load generator", stdin=True) as loadgen:
        assert loadgen.stdin is not None and loadgen.stdout is not None
        me = psutil.Process(loadgen.pid)
        await expect(loadgen.stdout, "measuring")
        pg_pids = (await backend_pids(postgres_url))[0] if postgres_url else set()
        pg_before = postgres_cpu(pg_pids)
        server_before, loadgen_before, busy_before = (
            cpu_of(servers),
            cpu_seconds(me),
            machine_busy(),
        )
        await expect(loadgen.stdout, "done")
        if postgres_url:
            pg_pids |= (await backend_pids(postgres_url))[0]
        pg_after = postgres_cpu(pg_pids)  # a backend gone meanwhile is left out (a little less)
        server_after, loadgen_after, busy_after = cpu_of(servers), cpu_seconds(me), machine_busy()
        loadgen.stdin.close()  # it waits for this before it prints its rows and exits
        out = json.loads(await loadgen.stdout.readline())
    seconds = float(out["seconds"])
    postgres = sum(cpu - pg_before.get(pid, 0.0) for pid, cpu in pg_after.items())
    busy = (busy_after[0] - busy_before[0]) / max(busy_after[1] - busy_before[1], 1e-9)
    return Window.of(
        rate=plan["rate"],
        seconds=seconds,
        kinds=out["kinds"],
        rows=out["rows"],
        server_cores=(server_after - server_before) / seconds,
        postgres_cores=postgres / seconds if postgres_url else None,
        loadgen_cores=(loadgen_after - loadgen_before) / seconds,
        machine_busy=busy,
    )


async def bench_database(kind: str, args: argparse.Namespace, workdir: Path) -> list[Outcome]:
    admin_url = admin_postgres_url(args.postgres_url)
    if kind == "postgres" and (why := await postgres_unavailable(admin_url)) is not None:
        skipped = f"Postgres at {admin_url.split('@')[-1]} unreachable ({why})"
        return [Outcome(kind, w, skipped=skipped) for w in args.workers]
    outcomes = []
    async with scratch_db(kind, directory=workdir, admin_url=admin_url, migrated=True) as url:
        engine = create_engine(url)
        try:
            pop = await populate(engine, hosts=args.hosts, gpus_per_host=8, seed=args.seed)
        finally:
            await engine.dispose()
        say(f"{kind}: {pop.hosts} hosts, {pop.offers} offers in {pop.seconds:.1f} s")
        tenant = await make_tenant(url, pop.org_id)
        for workers in args.workers:
            outcome = Outcome(kind, workers)
            outcomes.append(outcome)
            async with running_server(
                url,
                data_dir=workdir / f"server-{kind}-{workers}",
                admin_key=new_api_key(),
                run_controllers=True,
                log_level=args.server_log_level,
                settings={**PATIENT_HOST_HEALTH, "GPUYARD_WORKERS": str(workers)},
            ) as server:
                if not tenant.instances:
                    await rent(server.base_url, tenant, args.instances)
                requests = mix(tenant, writes=len(tenant.instances))
                try:
                    await measure(outcome, server, requests, args, url, workdir)
                except BaseException:
                    say(f"{kind}: server log tail:\n{log_tail(server.log_path)}")
                    raise
    return outcomes


async def measure(
    outcome: Outcome,
    server: ServerProcess,
    requests: list[dict[str, Any]],
    args: argparse.Namespace,
    url: str,
    workdir: Path,
) -> None:
    """A warm-up window, then each rate until one misses the target."""
    postgres_url = url if outcome.kind == "postgres" else None
    label = f"{outcome.kind}, {outcome.workers} worker(s)"
    server_pid = server.pid
    plan = {
        "url": server.base_url,
        "start_in_s": START_IN_S,
        "connections": args.connections,
        "requests": requests,
    }
    directory = workdir / f"plans-{outcome.kind}-{outcome.workers}"
    directory.mkdir()
    warm = {**plan, "rate": args.rates[0], "duration_s": args.warmup}
    await run_window(warm, directory / "warm.json", server_pid=server_pid, postgres_url=None)
    for rate in args.rates:
        window = await run_window(
            {**plan, "rate": rate, "duration_s": args.duration},
            directory / f"{rate}.json",
            server_pid=server_pid,
            postgres_url=postgres_url,
        )
        outcome.windows.append(window)
        say(f"{label}: {rate}/s: p50 {window.all.p50:.1f} ms, p99 {window.all.p99:.1f} ms")
        if window.all.p99 >= args.target_ms or window.errors:
            break


def say(message: str) -> None:
    print(f"  .. {message}", file=sys.stderr, flush=True)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="A mixed API load at rising rates against `gpuyard server --workers W`. "
        "Prints Markdown tables; progress goes to stderr.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--db", default="sqlite,postgres", help="comma-separated databases")
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument(
        "--rates",
        default="50,100,150,200,250,300,350,400,500,600,800,1000",
        help="req/s, rising",
    )
    parser.add_argument("--duration", type=float, default=10, help="seconds of each window")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of warm-up load")
    parser.add_argument("--target-ms", type=float, default=50, help="the p99 to stay under")
    parser.add_argument("--hosts", type=int, default=2_000, help="hosts of 8 GPUs in the fleet")
    parser.add_argument("--instances", type=int, default=50, help="instances the writes label")
    parser.add_argument(
        "--connections", type=int, default=32, help="kept-alive connections of the load"
    )
    parser.add_argument("--seed", type=int, default=7, help="seed of the fleet generator")
    parser.add_argument("--server-log-level", default="warning", help="GPUYARD_LOG_LEVEL")
    parser.add_argument(
        "--postgres-url",
        default=None,
        help="admin URL of the Postgres server to create the scratch database on; none: "
        "$GPUYARD_BENCH_POSTGRES_URL, else $GPUYARD_TEST_POSTGRES_URL, else 127.0.0.1:5432",
    )
    parser.add_argument(
        "--quick", action="store_true", help="< 1 min: 300 hosts, 2 s windows, coarse rates"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.hosts, args.instances, args.duration, args.warmup = 300, 10, 2, 1
        if args.rates == parser.get_default("rates"):
            args.rates = "100,200,300,400"
    args.db = [d.strip() for d in args.db.split(",") if d.strip()]
    args.workers = [int(w) for w in args.workers.split(",")]
    args.rates = [float(r) for r in args.rates.split(",")]
    for kind in args.db:
        if kind not in KINDS:
            parser.error(f"--db: unknown database {kind!r}")
    if args.rates != sorted(args.rates) or min(args.rates) <= 0:
        parser.error("--rates: positive and rising")
    return args


async def main(args: argparse.Namespace) -> None:
    idle = idle_load()  # before anything of ours runs
    started = time.perf_counter()
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="gpuyard-bench-") as tmp:
        for kind in args.db:
            outcomes += await bench_database(kind, args, Path(tmp))
    extra = ""
    if any(o.kind == "postgres" and o.skipped is None for o in outcomes):
        extra = f"Postgres {await postgres_version(admin_postgres_url(args.postgres_url))}; "
    print(render(outcomes, args, idle))
    print(f"\n{extra}total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(main(parse_args()))
