"""Placing replicas on a fleet: ``scheduler.place`` then ``scheduler.allocate``, one replica of a
new deployment per transaction (what the cluster controller does for each cluster it scales up),
until the fleet is full, on SQLite and Postgres. Rows are inserted directly: hosts of 16 GPUs,
all ready and isolating.

Reported per quarter of the fleet filled (the first placements see the most free GPUs): wall
milliseconds and this process's CPU milliseconds a placement.

    .venv/bin/python bench/placement.py              # 63 hosts, 1,008 placements
    .venv/bin/python bench/placement.py --quick      # 16 hosts, 256 placements
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import time
from datetime import UTC, datetime
from typing import Any

from report import machine_line, markdown_table
from scratch_db import admin_postgres_url, each_database
from sqlalchemy import insert

from gpuyard.core.credentials import hash_secret
from gpuyard.core.ids import new_id
from gpuyard.server import orm
from gpuyard.server.db import create_engine, session_factory, write_session
from gpuyard.server.services import scheduler

GPUS_PER_HOST = 16
GPU_KEY = "rtx-4090"


async def add_fleet(sessions: Any, hosts: int, org_id: str) -> None:
    now = datetime.now(UTC)
    host_rows: list[dict[str, Any]] = []
    gpu_rows: list[dict[str, Any]] = []
    for h in range(hosts):
        host_id = new_id("host")
        host_rows.append(
            {
                "id": host_id,
                "name": f"h{h}",
                "credential_hash": hash_secret(secrets.token_hex(16)),
                "status": "ready",
                "facts": {"isolation": {"isolates": True}},
                "address": "10.0.0.1",
                "created_at": now,
                "updated_at": now,
                "status_changed_at": now,
            }
        )
        for i in range(GPUS_PER_HOST):
            gpu_rows.append(
                {
                    "host_id": host_id,
                    "index": i,
                    "uuid": f"GPU-{h}-{i}",
                    "name": "RTX 4090",
                    "gpu_key": GPU_KEY,
                    "vram_mb": 24564,
                }
            )
    async with write_session(sessions) as s:
        await s.execute(
            insert(orm.Org).values(
                id=org_id,
                name="Placed",
                slug=f"placed-{secrets.token_hex(3)}",
                status="active",
                is_operator=False,
                created_at=now,
                updated_at=now,
            )
        )
        await s.execute(insert(orm.Host), host_rows)
        await s.execute(insert(orm.Gpu), gpu_rows)


async def measure(kind: str, url: str, hosts: int) -> list[list[object]]:
    engine = create_engine(url)
    sessions = session_factory(engine)
    org_id = new_id("org")
    await add_fleet(sessions, hosts, org_id)
    total = hosts * GPUS_PER_HOST
    quarter = total // 4
    rows: list[list[object]] = []
    for q in range(4):
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(quarter):
            async with write_session(sessions) as s:
                placement = await scheduler.place(
                    s, gpu_key=GPU_KEY, count=1, owner_id=new_id("cl"), org_id=org_id
                )
                assert placement is not None
                assert await scheduler.allocate(s, gpus=placement.gpus, workload_id=new_id("wl"))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        filled = f"{q * quarter:,}-{(q + 1) * quarter:,} of {total:,}"
        rows.append([kind, filled, f"{wall / quarter * 1000:.2f}", f"{cpu / quarter * 1000:.2f}"])
        print(f"{kind} {filled}: {wall / quarter * 1000:.2f} ms", file=sys.stderr)
    await engine.dispose()
    return rows


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=63)
    parser.add_argument("--quick", action="store_true", help="16 hosts")
    parser.add_argument("--postgres-url", default=None)
    args = parser.parse_args()
    if args.quick:
        args.hosts = 16
    rows: list[list[object]] = []
    async for kind, url in each_database(admin_postgres_url(args.postgres_url)):
        rows += await measure(kind, url, args.hosts)
    print(f"Placement ({machine_line()}); {args.hosts} hosts of {GPUS_PER_HOST} GPUs\n")
    print(markdown_table(["database", "placements", "wall ms each", "CPU ms each"], rows))


if __name__ == "__main__":
    asyncio.run(main())
