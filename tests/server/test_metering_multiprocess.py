"""Real ``gpuyard server`` processes on one Postgres meter the same fleet at once; one is killed
with SIGKILL in the middle and another started in its place. Afterwards every workload's seconds
are counted exactly from its start, each (workload, period) is charged once, and every meter's
charges add up to exactly ``floor(used)``."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from gpuyard.core.credentials import new_api_key
from gpuyard.core.money import MICROCENTS_PER_CENT, microcents_for
from gpuyard.server import orm
from gpuyard.server.db import create_engine, session_factory, write_session
from tests.server.metered_fleet import add_org, add_running_instances
from tests.server.test_controllers_multiprocess import free_port, fresh_pg, wait_ready

pytestmark = pytest.mark.slow
__all__ = ["fresh_pg"]
WORKLOADS = 3000  # three batches: the replicas split each pass
PRICE = 360_000  # a dollar a second: a cent every 10 ms, so every settlement charges


PASS = re.compile(r"metering: owner \S+ processed")
PASSES_BEFORE_KILL = 2  # each of the first two has metered while the other did


def start(url: str, admin: str, port: int, tmp: Path) -> subprocess.Popen[str]:
    """A server whose output goes to ``tmp/out.log`` (read while it runs: a pipe could fill)."""
    tmp.mkdir(parents=True, exist_ok=True)
    env = os.environ | {
        "GPUYARD_DATABASE_URL": url,
        "GPUYARD_ADMIN_KEY": admin,
        "GPUYARD_CONTROLLER_POLL_SECONDS": "0.1",
        "GPUYARD_METER_SETTLE_SECONDS": "0.3",
        "GPUYARD_DATA_DIR": str(tmp),
    }
    with (tmp / "out.log").open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "gpuyard.cli.main", "server", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )


def passes(tmp: Path) -> int:
    return len(PASS.findall((tmp / "out.log").read_text()))


async def until_metered(dirs: list[Path], procs: list[subprocess.Popen[str]], n: int) -> None:
    """Until each server has logged ``n`` metering passes (a condition, not a time: a loaded
    machine only makes it later)."""
    for _ in range(3000):
        if all(passes(d) >= n for d in dirs):
            return
        for d, proc in zip(dirs, procs, strict=True):
            assert proc.poll() is None, f"server exited:\n{(d / 'out.log').read_text()}"
        await asyncio.sleep(0.05)
    raise AssertionError(f"not every server metered {n} times: {[passes(d) for d in dirs]}")


async def test_killed_and_concurrent_meters_charge_exactly_once(fresh_pg: str, tmp_path) -> None:
    engine = create_engine(fresh_pg)
    sessions = session_factory(engine)
    started = datetime.now(UTC) - timedelta(hours=1)
    async with write_session(sessions) as s:
        org_id = await add_org(s, now=started)
        await add_running_instances(
            s, org_id=org_id, count=WORKLOADS, cents_per_hour=PRICE, started_at=started,
            now=started,
        )  # fmt: skip
    admin = new_api_key()
    ports = [free_port(), free_port()]
    dirs = [tmp_path / str(p) for p in ports]
    procs = [start(fresh_pg, admin, p, d) for p, d in zip(ports, dirs, strict=True)]
    try:
        await asyncio.gather(*(wait_ready(p, proc) for p, proc in zip(ports, procs, strict=True)))
        await until_metered(dirs, procs, PASSES_BEFORE_KILL)  # both meter the fleet at once
        procs[0].send_signal(signal.SIGKILL)  # in the middle of its passes
        procs[0].wait(timeout=10)
        procs[1].send_signal(signal.SIGINT)
        procs[1].wait(timeout=30)
        # Started again: it alone carries on from what the others committed.
        port = free_port()
        dirs.append(tmp_path / "again")
        procs.append(start(fresh_pg, admin, port, dirs[-1]))
        await wait_ready(port, procs[-1])
        await until_metered(dirs[-1:], procs[-1:], PASSES_BEFORE_KILL)
    finally:
        for proc in procs[1:]:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    outputs = [(d / "out.log").read_text() for d in dirs]
    async with sessions() as s:
        meters = list(await s.scalars(select(orm.Meter).where(orm.Meter.org_id == org_id)))
        per_workload = dict(
            (
                await s.execute(
                    select(
                        orm.Meter.workload_id,
                        select(func.coalesce(func.sum(orm.LedgerEntry.amount_cents), 0))
                        .where(
                            orm.LedgerEntry.key.like(
                                func.concat("usage:", orm.Meter.workload_id, ":%")
                            )
                        )
                        .scalar_subquery(),
                    ).where(orm.Meter.org_id == org_id)
                )
            ).all()
        )
        entries, keys = (
            await s.execute(
                select(func.count(), func.count(func.distinct(orm.LedgerEntry.key))).where(
                    orm.LedgerEntry.org_id == org_id
                )
            )
        ).one()
    await engine.dispose()
    assert len(meters) == WORKLOADS
    for m in meters:
        # Whole seconds from the reported start to where the count ends: none missing.
        assert m.total_seconds == int((m.accrued_until - started).total_seconds())
        assert m.total_seconds >= 3600
        used = m.base_microcents + microcents_for(m.cents_per_hour, m.seconds)
        assert m.charged_cents == used // MICROCENTS_PER_CENT  # none doubled, none short
        assert per_workload[m.workload_id] == -m.charged_cents
    assert entries == keys == sum(m.period for m in meters)
    counted = [len(PASS.findall(out)) for out in outputs]
    assert all(n >= PASSES_BEFORE_KILL for n in counted), counted  # all three metered
    assert all("Traceback" not in out for out in outputs[1:])
