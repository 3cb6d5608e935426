"""Webhook dispatch to a local receiver (its own process, answering 204) on SQLite and
Postgres: deliveries per second draining a burst of events (target >= 500/s), and the delay from
an event to its first attempt while events arrive steadily (target p99 < 1 s).

    .venv/bin/python bench/webhooks.py            # ~1 min
    .venv/bin/python bench/webhooks.py --quick
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from pathlib import Path

import httpx
from report import Latency, machine_line, markdown_table
from scratch_db import admin_postgres_url, each_database
from server_process import free_port
from sqlalchemy import func, select

from gpuyard.core.clock import SystemClock
from gpuyard.server import orm
from gpuyard.server.controllers.webhook_dispatch import WebhookDispatcher
from gpuyard.server.db import create_engine, session_factory, write_session
from gpuyard.server.services import events, orgs, webhooks

HERE = Path(__file__).resolve().parent


async def pending(sessions) -> int:  # type: ignore[no-untyped-def]
    async with sessions() as s:
        return int(
            await s.scalar(select(func.count()).where(orm.WebhookDelivery.status == "pending")) or 0
        )


async def measure(kind: str, url: str, hook_url: str, burst: int, rate: int, seconds: float):  # type: ignore[no-untyped-def]
    engine = create_engine(url)
    sessions = session_factory(engine)
    clock = SystemClock()
    async with write_session(sessions) as s:
        org = await orgs.create_org(s, clock=clock, name="Hooked", slug=None)
        await webhooks.create_endpoint(
            s, clock=clock, org_id=org.id, url=hook_url, event_types=[], description=None,
            allow_private=True,
        )  # fmt: skip
    d = WebhookDispatcher(sessions=sessions, clock=clock, owner="bench", allow_private=True)
    # A burst: every event recorded first, then drained.
    for start in range(0, burst, 500):
        async with write_session(sessions) as s:
            for i in range(start, min(burst, start + 500)):
                await events.record(
                    s, clock=clock, org_id=org.id, type="org.updated", data={"i": i}
                )
    began, cpu = time.perf_counter(), time.process_time()
    while await d.step():
        pass
    drained, cpu = time.perf_counter() - began, time.process_time() - cpu
    assert await pending(sessions) == 0
    await d.aclose()
    per_s = burst / drained
    # Steady arrivals: the dispatcher runs its loop, hinted after each commit as a server does.
    loop = asyncio.create_task(d.run())
    d.poll_seconds = 0.05
    sent_at = time.perf_counter()
    n = int(rate * seconds)
    for i in range(n):
        async with write_session(sessions) as s:
            await events.record(s, clock=clock, org_id=org.id, type="org.updated", data={"i": i})
        d.hint()
        sent_at += 1 / rate
        await asyncio.sleep(max(0.0, sent_at - time.perf_counter()))
    for _ in range(200):
        if not await pending(sessions):
            break
        await asyncio.sleep(0.05)
    loop.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await loop
    async with sessions() as s:
        rows = (
            await s.execute(
                select(orm.Event.created_at, orm.WebhookAttempt.created_at)
                .join(orm.WebhookDelivery, orm.WebhookDelivery.event_id == orm.Event.id)
                .join(orm.WebhookAttempt, orm.WebhookAttempt.delivery_id == orm.WebhookDelivery.id)
                .where(orm.WebhookAttempt.number == 1)
                .order_by(orm.Event.created_at.desc())
                .limit(n)
            )
        ).all()
    await engine.dispose()
    delay = Latency.of([(attempt - event).total_seconds() * 1000 for event, attempt in rows])
    return [
        kind, f"{burst:,}", f"{per_s:,.0f}", f"{cpu / burst * 1e3:.2f}",
        "yes" if per_s >= 500 else "NO", f"{n} at {rate}/s", f"{delay.p50:.0f}",
        f"{delay.p99:.0f}", "yes" if delay.p99 < 1000 else "NO",
    ]  # fmt: skip


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burst", type=int, default=2000)
    parser.add_argument("--rate", type=int, default=50, help="steady events per second")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--quick", action="store_true", help="500 events, 2 s steady")
    parser.add_argument("--postgres-url", default=None)
    args = parser.parse_args()
    if args.quick:
        args.burst, args.seconds = 500, 2.0
    port = free_port()
    receiver = await asyncio.create_subprocess_exec(
        sys.executable, str(HERE / "webhook_receiver.py"), str(port)
    )
    hook_url = f"http://127.0.0.1:{port}/hook"
    rows = []
    try:
        async with httpx.AsyncClient() as client:
            for _ in range(200):
                with contextlib.suppress(httpx.TransportError):
                    await client.post(hook_url)
                    break
                await asyncio.sleep(0.05)
        async for kind, url in each_database(admin_postgres_url(args.postgres_url)):
            rows.append(await measure(kind, url, hook_url, args.burst, args.rate, args.seconds))
            print(f"{kind}: {rows[-1]}", file=sys.stderr)
    finally:
        receiver.terminate()
        await receiver.wait()
    print(f"Webhook dispatch ({machine_line()})\n")
    print(
        markdown_table(
            [
                "database", "burst", "deliveries/s", "CPU ms/delivery", ">= 500/s",
                "steady", "delay p50 ms", "delay p99 ms", "p99 < 1 s",
            ],
            rows,
        )
    )  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
