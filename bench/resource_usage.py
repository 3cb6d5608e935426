"""What a benchmark window cost: CPU of the server process, of the bench database's Postgres
backends, of this process and of the whole machine; and the server's own latency histogram."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import asyncpg
import httpx
import psutil
from report import ms


@dataclass
class CpuSnapshot:
    wall: float
    server: float
    server_system: float
    loadgen: float
    postgres: dict[int, float]
    machine_busy: float
    machine_total: float


def cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


async def backend_pids(database_url: str) -> tuple[set[int], int]:
    """The Postgres backends serving ``database_url`` now (not other databases on the server),
    and how many sessions were ever opened on it."""
    base, _, name = database_url.rpartition("/")
    conn = await asyncpg.connect(
        base.replace("postgresql+asyncpg://", "postgresql://") + "/postgres"
    )
    try:
        rows = await conn.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1", name)
        sessions = await conn.fetchval(
            "SELECT sessions FROM pg_stat_database WHERE datname = $1", name
        )
    finally:
        await conn.close()
    return {int(r["pid"]) for r in rows}, int(sessions or 0)


def postgres_cpu(pids: set[int]) -> dict[int, float]:
    out: dict[int, float] = {}
    for pid in pids:
        try:
            out[pid] = cpu_seconds(psutil.Process(pid))
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return out


def snapshot(server: psutil.Process, pg_pids: set[int]) -> CpuSnapshot:
    machine = psutil.cpu_times()
    total = sum(machine)
    idle = machine.idle + getattr(machine, "iowait", 0.0)
    return CpuSnapshot(
        wall=time.perf_counter(),
        server=cpu_seconds(server),
        server_system=float(server.cpu_times().system),
        loadgen=cpu_seconds(psutil.Process()),
        postgres=postgres_cpu(pg_pids),
        machine_busy=total - idle,
        machine_total=total,
    )


_BUCKET = re.compile(
    r"^gpuyard_http_request_duration_seconds_bucket\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)$"
)


async def server_histogram(client: httpx.AsyncClient, route: str) -> dict[float, float]:
    """Cumulative counts of the server's own latency histogram of ``POST route``, by upper
    bound (s), from its ``/metrics``."""
    text = (await client.get("/metrics")).text
    out: dict[float, float] = {}
    for line in text.splitlines():
        m = _BUCKET.match(line)
        if m and f'route="{route}"' in m["labels"] and 'method="POST"' in m["labels"]:
            le = re.search(r'le="([^"]+)"', m["labels"])
            if le:
                out[float(le[1])] = float(m["value"])
    return out


def histogram_quantile(before: dict[float, float], after: dict[float, float], q: float) -> str:
    """``<= X ms``: the smallest bucket bound holding the q-th quantile of the window's requests."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    if not counts or counts[-1] <= 0:
        return "-"
    wanted = counts[-1] * q / 100
    for bound, count in zip(bounds, counts, strict=True):
        if count >= wanted:
            return "> 10 s" if bound == float("inf") else f"<= {ms(bound * 1000)}"
    return "-"
