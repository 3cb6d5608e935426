"""A metering pass over 10,000 running workloads (instances on fake hosts, rows inserted
directly), on SQLite and Postgres: wall time and this process's CPU per pass, against the target
of under 1 s. The first pass also opens the meters; the steady passes are what runs every settle
interval. The clock is a manual one moved a minute between passes, so every meter is due.

    .venv/bin/python bench/metering.py            # ~1 min
    .venv/bin/python bench/metering.py --quick    # 1,000 workloads
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from report import machine_line, markdown_table
from scratch_db import admin_postgres_url, each_database

from gpuyard.core.clock import ManualClock
from gpuyard.server.controllers.metering import MeteringController
from gpuyard.server.db import WalCheckpointer, create_engine, session_factory, write_session

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the fleet the tests use
from tests.server.metered_fleet import add_org, add_running_instances

TARGET_S = 1.0


async def measure(kind: str, url: str, workloads: int, passes: int) -> list[list[object]]:
    engine = create_engine(url)
    sessions = session_factory(engine)
    clock = ManualClock()
    now = clock.now()
    async with write_session(sessions) as s:
        org_id = await add_org(s, now=now)
        await add_running_instances(
            s, org_id=org_id, count=workloads, cents_per_hour=50, started_at=now, now=now
        )
    meter = MeteringController(sessions=sessions, clock=clock, owner="bench", settle_seconds=60)
    checkpointer = WalCheckpointer(engine)  # as the server runs it (SQLite only)
    checkpointer.start()
    rows: list[list[object]] = []
    for n in range(passes + 1):
        clock.advance(seconds=61)
        wall, cpu = time.perf_counter(), time.process_time()
        settled = 0
        while claimed := await meter.step():
            settled += claimed
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        assert settled == workloads, settled
        label = "first (opens meters)" if n == 0 else f"steady {n}"
        verdict = "yes" if wall < TARGET_S else "NO"
        rows.append([kind, label, f"{workloads:,}", f"{wall:.3f}", f"{cpu:.3f}", verdict])
        print(f"{kind} {label}: {wall:.3f} s", file=sys.stderr)
    await checkpointer.stop()
    await engine.dispose()
    return rows


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", type=int, default=10_000)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1,000 workloads, 2 passes")
    parser.add_argument("--postgres-url", default=None)
    args = parser.parse_args()
    if args.quick:
        args.workloads, args.passes = 1_000, 2
    rows: list[list[object]] = []
    async for kind, url in each_database(admin_postgres_url(args.postgres_url)):
        rows += await measure(kind, url, args.workloads, args.passes)
    print(f"Metering pass ({machine_line()}); target: under {TARGET_S:.0f} s a pass\n")
    print(
        markdown_table(
            ["database", "pass", "workloads", "wall s", "CPU s (this process)", "< 1 s"], rows
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
