"""Offer search latency over a large fleet, on SQLite and Postgres, at two layers.

The fleet (default 10,000 hosts x 8 GPUs: a mix of GPU types, countries, prices, network speeds,
host states, and GPUs already rented) is written straight into a scratch database with bulk
SQLAlchemy Core inserts; each host's offer rows come from ``services.offers.host_offers``, the
function the server itself uses, so the offers table holds what registrations would have made.

Two layers are timed for each query:

- ``service``: ``services.offers.search`` on an open session (SQL, ORM rows, domain objects);
- ``http``: the whole request, sent one at a time, against a real ``gpuyard server`` child
  process on loopback: ``POST /api/v0/bundles/`` (the Vast dialect, where the server has it) and
  ``GET /v1/orgs/{org}/offers?q=<the same Vast JSON>`` (the native API). Two reference rows give
  the HTTP floor: ``GET /healthz`` (no database) and ``GET /v1/me`` (API key lookup only).

Last, one operator price change (``services.prices.set_price``, which rebuilds every offer) is
timed, since it rewrites the table the searches read.

Queries are interleaved round-robin so that noise on a shared machine hits them alike. The target
(offer search p50 < 20 ms) is printed next to each result.

    .venv/bin/python bench/offer_search.py            # full: 10,000 hosts, both databases
    .venv/bin/python bench/offer_search.py --quick    # smoke test, < 30 s
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from offer_fleet import DEFAULT_PRICE, GPU_MIX, Populated, populate
from report import Latency, idle_load, machine_line, markdown_table, ms
from scratch_db import KINDS, admin_postgres_url, postgres_unavailable, postgres_version
from scratch_db import scratch_database as scratch_db
from server_process import running_server
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from gpuyard.core.clock import SystemClock
from gpuyard.core.credentials import new_api_key
from gpuyard.core.offer_query import OfferQuery, parse_cli_order, parse_cli_query, query_to_json
from gpuyard.server.db import create_engine, session_factory, write_session
from gpuyard.server.services import offers, prices

TARGET_P50_MS = 20.0
LIMIT = 64


# --- the queries ----------------------------------------------------------------------------------

VASTAI_DEFAULTS = {
    "verified": {"eq": True},
    "external": {"eq": False},
    "rentable": {"eq": True},
    "rented": {"eq": False},
}


@dataclass(frozen=True, slots=True)
class Search:
    name: str
    text: str
    order: str
    vastai_defaults: bool = False

    def query(self) -> OfferQuery:
        parsed = parse_cli_query(
            self.text, defaults=VASTAI_DEFAULTS if self.vastai_defaults else None
        )
        return OfferQuery(filters=parsed.filters, order=parse_cli_order(self.order), limit=LIMIT)

    def body(self) -> dict[str, object]:
        """The Vast JSON body for this search (what ``vastai search offers`` sends)."""
        body = query_to_json(self.query())
        if self.vastai_defaults:
            body["external"] = {"eq": False}
        return body


SEARCHES = (
    Search("gpu_name=RTX_4090 num_gpus>=2 -o dph_total", "gpu_name=RTX_4090 num_gpus>=2",
           "dph_total"),
    Search("vastai defaults + gpu_ram>=24 -o score-", "gpu_ram>=24", "score-",
           vastai_defaults=True),
    Search(
        "gpu_name=H100_SXM num_gpus=8 geolocation in [EU] inet_down>=1000 -o dph_total",
        "gpu_name=H100_SXM num_gpus=8 geolocation in [DE,SE,NL,FR,FI,PL] inet_down>=1000",
        "dph_total",
    ),
    Search(
        "num_gpus=1 cuda_max_good>=12.4 gpu_ram>=24 -o dph_total",
        "num_gpus=1 cuda_max_good>=12.4 gpu_ram>=24",
        "dph_total",
    ),
)  # fmt: skip


# --- timing -------------------------------------------------------------------------------------

Probe = Callable[[], Coroutine[Any, Any, tuple[int, float]]]
"""One call: how many offers it found and how many seconds the timed part took."""


async def time_round_robin(
    probes: dict[str, Probe], *, iterations: int, warmup: int
) -> tuple[dict[str, Latency], dict[str, int]]:
    samples: dict[str, list[float]] = {name: [] for name in probes}
    rows: dict[str, int] = {}
    for i in range(warmup + iterations):
        for name, probe in probes.items():
            rows[name], seconds = await probe()
            if i >= warmup:
                samples[name].append(seconds * 1000)
    return {name: Latency.of(v) for name, v in samples.items()}, rows


def service_probes(engine: AsyncEngine, org_id: str) -> dict[str, Probe]:
    """Time ``offers.search`` alone: the session's connection is checked out and its
    transaction begun before the clock starts, as the request's unit of work would have."""
    sessions = session_factory(engine)

    def probe(query: OfferQuery) -> Probe:
        async def run() -> tuple[int, float]:
            async with sessions() as session, session.begin():
                await session.connection()
                started = time.perf_counter()
                found = await offers.search(session, query=query, org_id=org_id)
                return len(found), time.perf_counter() - started

        return run

    return {s.name: probe(s.query()) for s in SEARCHES}


ROUTES = {
    "vast": "http POST /api/v0/bundles/",
    "native": "http GET /v1/orgs/{org}/offers?q=",
}
FLOORS = ("floor: GET /healthz", "floor: GET /v1/me")


async def http_routes(client: httpx.AsyncClient, wanted: str) -> list[str]:
    """The routes to time: ``vast`` only where the server has ``POST /api/v0/bundles/``."""
    r = await client.post("/api/v0/bundles/", json={"limit": 1})
    has_vast = r.status_code not in (404, 405)
    if wanted == "all":
        return ["vast", "native"] if has_vast else ["native"]
    if wanted == "vast" and not has_vast:
        raise SystemExit("--http-route vast: this server has no POST /api/v0/bundles/")
    return [wanted]


def http_probes(
    client: httpx.AsyncClient, org_id: str, route: str, *, floors: bool
) -> dict[str, Probe]:
    def probe(search: Search) -> Probe:
        body = search.body()
        body["limit"] = LIMIT

        params = {"q": json.dumps(body), "limit": str(LIMIT)}

        async def vast() -> tuple[int, float]:
            started = time.perf_counter()
            r = await client.post("/api/v0/bundles/", json=body)
            seconds = time.perf_counter() - started
            r.raise_for_status()
            return len(r.json()["offers"]), seconds

        async def native() -> tuple[int, float]:
            started = time.perf_counter()
            r = await client.get(f"/v1/orgs/{org_id}/offers", params=params)
            seconds = time.perf_counter() - started
            r.raise_for_status()
            return len(r.json()["data"]), seconds

        return vast if route == "vast" else native

    def floor(path: str) -> Probe:
        async def get() -> tuple[int, float]:
            started = time.perf_counter()
            r = await client.get(path)
            seconds = time.perf_counter() - started
            r.raise_for_status()
            return 0, seconds

        return get

    probes = {s.name: probe(s) for s in SEARCHES}
    if floors:
        probes[FLOORS[0]] = floor("/healthz")
        probes[FLOORS[1]] = floor("/v1/me")
    return probes


async def explain(engine: AsyncEngine) -> None:
    """Print each search's SQL plan (Postgres: EXPLAIN ANALYZE; SQLite: EXPLAIN QUERY PLAN)."""
    seen: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        seen.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", capture)
    sessions = session_factory(engine)
    try:
        for search in SEARCHES:
            async with sessions() as session, session.begin():
                seen.clear()
                await offers.search(session, query=search.query())
                statement, parameters = seen[-1]
                prefix = (
                    "EXPLAIN (ANALYZE, BUFFERS) "
                    if engine.dialect.name == "postgresql"
                    else "EXPLAIN QUERY PLAN "
                )
                conn = await session.connection()
                plan = await conn.exec_driver_sql(prefix + statement, parameters)
                print(f"\n-- {engine.dialect.name}: {search.name}")
                for row in plan.all():
                    print("   ", " | ".join(str(c) for c in row))
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", capture)


# --- one database -------------------------------------------------------------------------------


@dataclass
class DbResult:
    kind: str
    populated: Populated | None = None
    layers: dict[str, dict[str, Latency]] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    skipped: str | None = None
    price_change_s: float | None = None
    seconds: float = 0.0


async def time_price_change(url: str) -> float:
    """Seconds for the operator to change one GPU type's price: ``services.prices.set_price``,
    which rebuilds every host's offers in the same transaction (``offers.refresh_all``)."""
    engine = create_engine(url)
    try:
        started = time.perf_counter()
        async with write_session(session_factory(engine)) as session:
            await prices.set_price(
                session,
                clock=SystemClock(),
                gpu_name=GPU_MIX[0][0],
                cents=GPU_MIX[0][3] or DEFAULT_PRICE + 1,
            )
        return time.perf_counter() - started
    finally:
        await engine.dispose()


async def bench_database(kind: str, args: argparse.Namespace, workdir: Path) -> DbResult:
    result = DbResult(kind)
    started = time.perf_counter()
    admin_url = admin_postgres_url(args.postgres_url)
    if kind == "postgres":
        why = await postgres_unavailable(admin_url)
        if why is not None:
            result.skipped = f"Postgres at {admin_url.split('@')[-1]} unreachable ({why})"
            return result
    async with scratch_db(kind, directory=workdir, admin_url=admin_url, migrated=True) as url:
        engine = create_engine(url)
        try:
            pop = await populate(
                engine, hosts=args.hosts, gpus_per_host=args.gpus_per_host, seed=args.seed
            )
            result.populated = pop
            say(f"{kind}: {pop.hosts} hosts, {pop.offers} offers loaded in {pop.seconds:.1f} s")
            if args.explain:
                await explain(engine)
            if "service" in args.layers:
                result.layers["service"], rows = await time_round_robin(
                    service_probes(engine, pop.org_id),
                    iterations=args.iterations,
                    warmup=args.warmup,
                )
                result.rows.update(rows)
                say(f"{kind}: service layer done")
        finally:
            await engine.dispose()
        if "http" in args.layers:
            async with running_server(
                url,
                data_dir=workdir / f"server-{kind}",
                admin_key=new_api_key(),
                run_controllers=False,  # host health would age the fake fleet out mid-run
            ) as server:
                headers = {"Authorization": f"Bearer {pop.api_key}"}
                async with httpx.AsyncClient(
                    base_url=server.base_url, headers=headers, timeout=30
                ) as client:
                    probes: dict[str, Probe] = {}
                    routes = await http_routes(client, args.http_route)
                    for i, route in enumerate(routes):
                        for name, p in http_probes(
                            client, pop.org_id, route, floors=i == 0
                        ).items():
                            probes[f"{route}|{name}"] = p
                    timed, rows = await time_round_robin(
                        probes, iterations=args.iterations, warmup=args.warmup
                    )
                    for key, lat in timed.items():
                        route, name = key.split("|", 1)
                        layer = "http (floor)" if name in FLOORS else ROUTES[route]
                        result.layers.setdefault(layer, {})[name] = lat
                        n = rows[key]
                        if name in result.rows and result.rows[name] != n:
                            raise AssertionError(f"{key}: {result.rows[name]} offers, then {n}")
                        result.rows.setdefault(name, n)
            say(f"{kind}: http layer done")
        result.price_change_s = await time_price_change(url)  # last: it rewrites every offer
    result.seconds = time.perf_counter() - started
    return result


# --- output -------------------------------------------------------------------------------------


def say(message: str) -> None:
    print(f"  .. {message}", file=sys.stderr, flush=True)


def cell(lat: Latency | None, *, judged: bool) -> str:
    if lat is None or lat.n == 0:
        return "-"
    verdict = ""
    if judged:
        verdict = " ok" if lat.p50 < TARGET_P50_MS else " MISS"
    return f"{ms(lat.p50)} / {ms(lat.p99)} / {ms(lat.mean)}{verdict}"


def render(results: Sequence[DbResult], args: argparse.Namespace, idle: str) -> str:
    done = [r for r in results if r.skipped is None]
    headers = ["query", "layer", "offers"]
    headers += [f"{r.kind} p50 / p99 / mean ms" for r in done]
    headers += ["target"]
    rows: list[list[object]] = []
    names = [s.name for s in SEARCHES]
    layers = sorted(
        {layer for r in done for layer in r.layers},
        key=lambda layer: (layer != "service", layer == "http (floor)", layer),
    )
    for layer in layers:
        for name in [*names, *FLOORS]:
            if not any(name in r.layers.get(layer, {}) for r in done):
                continue
            judged = name in names
            found = {r.rows.get(name) for r in done if name in r.rows}
            count = found.pop() if len(found) == 1 else "?"
            row: list[object] = [name, layer, count if judged else ""]
            for r in done:
                row.append(cell(r.layers.get(layer, {}).get(name), judged=judged))
            row.append(f"p50 < {TARGET_P50_MS:.0f}" if judged else "")
            rows.append(row)
    lines = [
        f"offer search: {machine_line()}",
        f"fleet: {args.hosts} hosts x {args.gpus_per_host} GPUs, limit {LIMIT}; "
        f"{args.iterations} timed runs per query per layer after {args.warmup} warm-up, "
        "queries interleaved",
        idle,
    ]
    for r in results:
        if r.skipped:
            lines.append(f"{r.kind}: SKIPPED: {r.skipped}")
        elif r.populated is not None:
            lines.append(
                f"{r.kind}: {r.populated.offers} offers, loaded in {r.populated.seconds:.1f} s; "
                f"an operator price change (set_price, rebuilds every offer) took "
                f"{r.price_change_s or 0:.1f} s; whole run {r.seconds:.0f} s"
            )
    return "\n".join(lines) + "\n\n" + markdown_table(headers, rows)


# --- entry point --------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Offer search latency (service call and HTTP) over a large fleet on SQLite "
        "and Postgres. Prints a Markdown table; progress goes to stderr.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--hosts", type=int, default=10_000, help="hosts in the fleet")
    parser.add_argument("--gpus-per-host", type=int, default=8, help="GPUs per host")
    parser.add_argument("--iterations", type=int, default=200, help="timed runs per query")
    parser.add_argument("--warmup", type=int, default=20, help="untimed runs per query first")
    parser.add_argument(
        "--db", default=",".join(KINDS), help="comma-separated databases: sqlite,postgres"
    )
    parser.add_argument(
        "--layers", default="service,http", help="comma-separated layers: service,http"
    )
    parser.add_argument(
        "--http-route",
        choices=("all", "vast", "native"),
        default="all",
        help="HTTP routes to time: POST /api/v0/bundles/ (vast, where the server has it), "
        "GET /v1/orgs/{org}/offers?q=<the same JSON> (native), or all",
    )
    parser.add_argument(
        "--postgres-url",
        default=None,
        help="admin URL of the Postgres server to create the scratch database on; none: "
        "$GPUYARD_BENCH_POSTGRES_URL, else $GPUYARD_TEST_POSTGRES_URL, else 127.0.0.1:5432",
    )
    parser.add_argument("--seed", type=int, default=7, help="seed of the fleet generator")
    parser.add_argument("--explain", action="store_true", help="print each query's SQL plan")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test in < 30 s: 1,000 hosts, 20 timed runs, 3 warm-up",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.hosts, args.iterations, args.warmup = 1_000, 20, 3
    args.db = [d.strip() for d in args.db.split(",") if d.strip()]
    args.layers = [x.strip() for x in args.layers.split(",") if x.strip()]
    for kind in args.db:
        if kind not in KINDS:
            parser.error(f"--db: unknown database {kind!r}")
    for layer in args.layers:
        if layer not in ("service", "http"):
            parser.error(f"--layers: unknown layer {layer!r}")
    return args


async def main(args: argparse.Namespace) -> None:
    idle = idle_load()  # before anything of ours runs
    started = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory(prefix="gpuyard-bench-") as tmp:
        for kind in args.db:
            results.append(await bench_database(kind, args, Path(tmp)))
    print(render(results, args, idle))
    versions = []
    if any(r.kind == "postgres" and r.skipped is None for r in results):
        versions.append(f"Postgres {await postgres_version(admin_postgres_url(args.postgres_url))}")
    versions.append(f"SQLite {sqlite3.sqlite_version}")
    print(f"\n{'; '.join(versions)}; total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
